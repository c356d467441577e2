"""The one-line errors survive pickling: they cross to and from child processes (the plots
child builds the objective) and must arrive as themselves, not as a broken pool."""

from __future__ import annotations

import pickle

import pytest

from objectives import ObjectiveError
from sweeps.errors import UsageError


@pytest.mark.parametrize("error", [ObjectiveError, UsageError])
def test_a_pickled_error_is_the_same_error(error: type[Exception]) -> None:
    raised = error("objective-arg size", 0, "use an integer >= 1")
    again = pickle.loads(pickle.dumps(raised))
    assert type(again) is error
    assert (again.field, again.value, again.allowed) == ("objective-arg size", 0,
                                                         "use an integer >= 1")
    assert str(again) == str(raised)
