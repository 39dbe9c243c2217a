"""The gates gatelens builds, as a table without torch (the CLI's help and TrainConfig read it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateKind:
    """One row per gate gatelens builds: where it sits and which module's output carries its logits."""

    name: str
    position: str | None      # "G1" (SDPA output, before W_O) | "G2" (values) | None
    module: str | None        # under the attention module; its forward output: logits [batch, pos, head, g]
    headwise: bool = False    # one score per head (else one per head and dimension)
    shared: bool = False      # one gate vector per position for all heads
    constant: bool = False    # a learned logit per head and dimension, the same for every token


GATE_KINDS: dict[str, GateKind] = {k.name: k for k in (
    GateKind("none", None, None),
    GateKind("elementwise", "G1", "q_proj.hook_gate"),
    GateKind("headwise", "G1", "q_proj.hook_gate", headwise=True),
    GateKind("head-shared", "G1", "q_proj.hook_gate", shared=True),
    GateKind("input-independent", "G1", "q_proj.hook_gate", constant=True),
    GateKind("value", "G2", "v_proj.hook_gate"),
)}
GATES = tuple(GATE_KINDS)
