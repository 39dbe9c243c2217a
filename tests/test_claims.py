"""The README's claims checker (scripts/check_claims.py, docs/claims.toml) on a cheap subset: the mech table
re-made by `gatelens compare` and the cards, and the mech baseline's sink ablation."""

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs gatelens commands on zoo models

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import check_claims  # noqa: E402


def test_readme_mech_numbers_are_what_their_commands_print():
    lines = []
    failed = check_claims.check("quick", only=("mech.", "ablate.sink_all.mech-baseline", "smollm2.f_attn.figure"),
                                echo=lines.append)
    assert failed == 0, "\n".join(lines)
    assert sum(line.startswith("ok") for line in lines) == 35, "\n".join(lines)


def test_a_wrong_number_fails(monkeypatch):
    real = check_claims.read_file
    monkeypatch.setattr(check_claims, "read_file", lambda claim: real(claim) + 0.01)
    lines = []
    assert check_claims.check("quick", only=("mech.dormant.",), echo=lines.append) == 3
    assert all("FAIL" in line for line in lines[:3])


def test_printed_precision():
    assert check_claims.printed("**0.753**") == (0.753, 0.0005)
    assert check_claims.printed("24,926") == (24926.0, 0.5)
    assert check_claims.printed("−0.000")[0] == 0.0 and check_claims.printed("+15.4") == (15.4, 0.05)
