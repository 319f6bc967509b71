"""Top-1 agreement with ties (tinycluster.evaluate.agreement): an int8 softmax output is quantized in
steps of 1/256, so two classes can tie for its top; a tie agrees with either tied class."""
import numpy as np

from tinycluster.evaluate import agreement, agreement_argmax, agrees, top_ties


def test_without_ties_it_is_argmax_equality():
    rng = np.random.default_rng(3)
    a, b = rng.random((500, 10)), rng.random((500, 10))  # continuous: no ties
    assert top_ties(a) == 0 and top_ties(b) == 0
    assert agreement(a, b) == agreement_argmax(a, b) == float(np.mean(a.argmax(1) == b.argmax(1)))


def test_a_tie_agrees_with_either_tied_class_only():
    ref = np.array([[3, 3, 1], [3, 3, 1], [3, 3, 1], [0, 5, 1]], dtype=np.int8)
    y = np.array([[0, 9, 1], [9, 0, 1], [0, 1, 9], [0, 5, 5]], dtype=np.int8)
    # rows 0, 1: y's top is one of ref's tied classes; row 2: it is not; row 3: y ties, one of them is ref's top
    assert agreement(y, ref) == 0.75 and agreement(ref, y) == 0.75
    assert agrees(y, ref).tolist() == [True, True, False, True]
    # argmax gives ties to the lowest index: row 0 would count as a disagreement, row 1 as agreement
    assert agreement_argmax(y, ref) == 0.5
    assert top_ties(ref) == 3 and top_ties(y) == 1
    assert agreement(ref, ref) == 1.0
