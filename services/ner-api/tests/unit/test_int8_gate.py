"""The int8 gate's decision: F1 within the allowed drop, and (by default) no slower than fp32 on this CPU."""

from __future__ import annotations

from synthner_ner_api.loading import GatePass, QuantizationGate


def gate(int8_f1: float, int8_seconds: float, *, only_if_faster: bool = True) -> QuantizationGate:
    return QuantizationGate(
        fp32=GatePass(strict_f1=0.85, seconds=2.0),
        int8=GatePass(strict_f1=int8_f1, seconds=int8_seconds),
        max_drop=0.005,
        documents=50,
        only_if_faster=only_if_faster,
    )


def test_int8_within_the_drop_and_faster_is_served() -> None:
    passed = gate(0.848, 1.5)
    assert passed.int8_served
    assert passed.as_dict()["precision"] == "int8"


def test_int8_that_loses_too_much_f1_is_not_served_however_fast() -> None:
    assert not gate(0.84, 0.5).int8_served


def test_int8_slower_than_fp32_on_this_cpu_is_not_served_unless_speed_is_waived() -> None:
    slower = gate(0.85, 2.2)
    assert slower.f1_passed
    assert not slower.int8_faster
    assert not slower.int8_served
    info = slower.as_dict()
    assert info["precision"] == "fp32"
    assert info["int8_gate"] == {
        "fp32_strict_f1": 0.85,
        "int8_strict_f1": 0.85,
        "max_f1_drop": 0.005,
        "gold_documents": 50,
        "fp32_seconds": 2.0,
        "int8_seconds": 2.2,
        "only_if_faster": True,
        "passed": False,
    }
    assert gate(0.85, 2.2, only_if_faster=False).int8_served
