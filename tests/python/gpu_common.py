"""What the GPU test modules of the drop-in layer share: an autouse fixture that needs the library
and turns grad mode off, and the equality check for two runs of the same kernel."""

import pytest
import torch


@pytest.fixture(autouse=True)
def no_grad_with_library(library):
    with torch.no_grad():
        yield


def same_result(a, b):
    # The same kernel on the same inputs: equal up to (at most) reduction-order noise.
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
