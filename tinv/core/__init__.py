"""The ground floor: errors and atomic writes; imports nothing of tinv."""
