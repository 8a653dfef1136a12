import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Several jobs share this machine's cores; one thread each avoids OpenMP spin-waits.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
