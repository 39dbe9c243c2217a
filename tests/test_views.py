"""Interactive views: self-contained pages (nothing fetched), data that says what the static outputs say, and a real
render in headless Chromium with the network unreachable."""

import json
import re
import shutil
import subprocess

import pytest
import torch

from gatelens.measure import sink
from gatelens.patterns import AttentionMap
from gatelens.views import attention_html, heads_html

BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")


def _data(page: str) -> dict:
    return json.loads(re.search(r"<script type='application/json' id='data'>(.*?)</script>", page, re.S)
                      .group(1).replace("<\\/", "</"))


def _maps(tokens):
    n = len(tokens)
    p = torch.tril(torch.ones(n, n))
    p = p / p.sum(-1, keepdim=True)
    model = {"spec": "toy"}
    return [AttentionMap(p, tokens, 0, None, 1, model, 0.5, n), AttentionMap(p, tokens, 0, 0, 1, model, 0.5, n)]


def test_pages_fetch_nothing_and_survive_hostile_tokens():
    tokens = ["<bos>", "</script><script>alert(1)</script>", "a\"b", "é"]
    page = attention_html(_maps(tokens))
    assert not re.search(r"(src|href)\s*=|https?://|@import|url\(", page)      # nothing to fetch
    assert page.count("</script>") == 2                                           # the token cannot close a script
    d = _data(page)
    assert d["tokens"] == tokens and [m["name"] for m in d["maps"]] == ["mean over heads", "head 0"]
    assert d["maps"][0]["pattern"][2][:3] == [pytest.approx(1 / 3, abs=1e-5)] * 3


def test_pooled_maps_are_refused():
    m = _maps(["a", "b"])[0]
    m.pooled = 2
    with pytest.raises(ValueError, match="exact map"):
        attention_html([m])


def test_heads_page_holds_every_per_head_statistic():
    r = sink("mech-baseline", seq_len=64, n_seqs=2)
    d = _data(heads_html(r))
    assert d["stats"] == ["f_attn", "sink_rate"] and d["n_heads"] == 1
    assert d["layers"][0]["values"]["f_attn"] == [pytest.approx(r.f_attn)]


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium (.ci/run installs chromium-headless-shell)")
@pytest.mark.slow
def test_views_render_offline_in_headless_chromium(tmp_path):
    from typer.testing import CliRunner

    from gatelens.cli import app

    out = tmp_path / "v"
    r = CliRunner().invoke(app, ["attn-map", "mech-baseline", "--layer", "0", "--seq-len", "24", "--html",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["heads", "mech-baseline", "--n-seqs", "2", "--seq-len", "64", "--html",
                                 "--out", str(tmp_path / "h")])
    assert r.exit_code == 0, r.output
    offline = ["--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
               "--virtual-time-budget=3000", "--dump-dom"]

    def dom(page):
        return subprocess.run([BROWSER, *offline, page.as_uri()], capture_output=True, text=True, timeout=120).stdout

    att = dom(out / "attn_map_L0_mech-baseline.html")
    tokens = _data((out / "attn_map_L0_mech-baseline.html").read_text())["tokens"]
    spans = re.findall(r'<span class="tok"[^>]*>(.*?)</span>', att)
    assert len(spans) == len(tokens) == 24 and spans[0] == tokens[0].replace("<", "&lt;").replace(">", "&gt;")
    assert re.search(r'<option value="1">head 0</option>', att)                # the script ran: options were built
    heads = dom(tmp_path / "h" / "heads_heads.html")
    assert re.search(r'<span id="range">dormant: [0-9.e-]+ \(dark\)', heads)
