"""Tools that use the library: the benchmark, the GPU suite, toy-world pretraining, gates, samples."""
