import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test that changes torch's thread count must not change it for the tests after it: bitwise comparisons
    between this process and a subprocess (resume after kill -9) need both to reduce with the same thread count."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
