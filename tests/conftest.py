import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test that changes torch's thread count must not change it for the tests after it: bitwise comparisons
    between this process and a subprocess (resume after kill -9) need both to reduce with the same thread count."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_out(tmp_path_factory):
    """One output folder for the smoke reproductions of the whole session, so experiments share their common runs
    as they do for users, and a test that needs a report another test built takes its finished runs."""
    return tmp_path_factory.mktemp("reproduce")
