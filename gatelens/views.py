"""Interactive views: self-contained HTML pages (inline CSS, JavaScript and data) that work offline and in Jupyter.

Two views, both drawn by a few dozen lines of plain JavaScript in the page itself, with nothing fetched from the
network (no CDN, no fonts, no images): pages a user writes keep working on an air-gapped machine and in a
notebook rendered years later.
  attention_html   the attention pattern of one layer, a head (or the head mean) picked in the page, with the
                   query / key tokens and the weight under the pointer; under it the attention each key receives
                   (its mean weight over the queries that see it, the column mean of the map), over the text.
  heads_html       a layer x head heatmap of any per-head statistic of a result (`HeadResult`), picked in the page,
                   with the value under the pointer.
circuitsvis (the TransformerLens ecosystem's viewer) is not used: it probes the network on every render and a page it
renders online keeps a CDN link. Views are output only: they never run a model.
"""

from __future__ import annotations

import html
import json

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;margin:12px;color:#222}
h1{font-size:15px;margin:0 0 6px} .sub{color:#666;margin-bottom:8px}
select{font-size:13px;margin-right:10px} #tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;
padding:3px 6px;font-size:12px;display:none;white-space:pre} .tok{display:inline-block;padding:1px 2px;margin:1px;
border-radius:2px;font-family:monospace;font-size:12px;cursor:default} canvas{border:1px solid #ccc}
"""

_COLOR = """
function color(v){v=Math.max(0,Math.min(1,v));const s=[[13,8,135],[126,3,168],[204,71,120],[248,149,64],[240,249,33]];
const x=v*(s.length-1),i=Math.min(s.length-2,Math.floor(x)),f=x-i;
return 'rgb('+s[i].map((c,k)=>Math.round(c+(s[i+1][k]-c)*f)).join(',')+')';}
function tip(e,text){const t=document.getElementById('tip');if(!text){t.style.display='none';return;}
t.textContent=text;t.style.display='block';t.style.left=(e.clientX+12)+'px';t.style.top=(e.clientY+12)+'px';}
"""

_ATTENTION_JS = """
const D=JSON.parse(document.getElementById('data').textContent);
const sel=document.getElementById('head'),cv=document.getElementById('map'),ctx=cv.getContext('2d');
const n=D.tokens.length,cell=Math.max(4,Math.min(14,Math.floor(560/n)));cv.width=cv.height=n*cell;
D.maps.forEach((m,i)=>{const o=document.createElement('option');o.value=i;o.textContent=m.name;sel.appendChild(o);});
function draw(){const m=D.maps[sel.value].pattern;
 for(let i=0;i<n;i++)for(let j=0;j<n;j++){ctx.fillStyle=j<=i?color(Math.sqrt(m[i][j])):'#f4f4f4';
  ctx.fillRect(j*cell,i*cell,cell,cell);}
 const row=document.getElementById('received');row.innerHTML='';
 for(let j=0;j<n;j++){let s=0,c=0;for(let i=Math.max(j,1);i<n;i++){s+=m[i][j];c++;}const r=c?s/c:0;
  const span=document.createElement('span');span.className='tok';span.textContent=D.tokens[j];
  span.style.background=color(Math.sqrt(r));span.style.color=r>0.3?'#000':'#fff';
  span.onmousemove=e=>tip(e,'key '+j+' '+JSON.stringify(D.tokens[j])+'\\nreceived '+r.toFixed(4)+' from '+c+' queries');
  span.onmouseleave=e=>tip(e,null);row.appendChild(span);}}
cv.onmousemove=e=>{const r=cv.getBoundingClientRect(),i=Math.floor((e.clientY-r.top)/cell),j=Math.floor((e.clientX-r.left)/cell);
 if(i<0||j<0||i>=n||j>=n||j>i){tip(e,null);return;}
 tip(e,'query '+i+' '+JSON.stringify(D.tokens[i])+'\\nkey '+j+' '+JSON.stringify(D.tokens[j])+'\\nweight '+D.maps[sel.value].pattern[i][j].toFixed(4));};
cv.onmouseleave=e=>tip(e,null);sel.onchange=draw;draw();
"""

_HEADS_JS = """
const D=JSON.parse(document.getElementById('data').textContent);
const sel=document.getElementById('stat'),cv=document.getElementById('map'),ctx=cv.getContext('2d');
const L=D.layers.length,H=D.n_heads,cell=Math.max(8,Math.min(28,Math.floor(560/Math.max(L,H))));
cv.width=H*cell;cv.height=L*cell;
D.stats.forEach(s=>{const o=document.createElement('option');o.value=s;o.textContent=s;sel.appendChild(o);});
function draw(){const s=sel.value;let lo=Infinity,hi=-Infinity;
 D.layers.forEach(l=>l.values[s].forEach(v=>{if(v!==null){lo=Math.min(lo,v);hi=Math.max(hi,v);}}));
 document.getElementById('range').textContent=s+': '+lo.toPrecision(4)+' (dark) .. '+hi.toPrecision(4)+' (light)';
 D.layers.forEach((l,i)=>l.values[s].forEach((v,h)=>{ctx.fillStyle=v===null?'#ddd':color(hi>lo?(v-lo)/(hi-lo):0.5);
  ctx.fillRect(h*cell,i*cell,cell,cell);}));}
cv.onmousemove=e=>{const r=cv.getBoundingClientRect(),i=Math.floor((e.clientY-r.top)/cell),h=Math.floor((e.clientX-r.left)/cell);
 if(i<0||h<0||i>=L||h>=H){tip(e,null);return;}const v=D.layers[i].values[sel.value][h];
 tip(e,'layer '+D.layers[i].layer+' head '+h+'\\n'+sel.value+' '+(v===null?'n/a':v.toPrecision(5)));};
cv.onmouseleave=e=>tip(e,null);sel.onchange=draw;draw();
"""


def _page(title: str, subtitle: str, body: str, data: dict, script: str) -> str:
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")   # no early </script> from a token
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1><div class='sub'>"
            f"{html.escape(subtitle)}</div>\n{body}\n<div id='tip'></div>\n"
            f"<script type='application/json' id='data'>{payload}</script>\n"
            f"<script>{_COLOR}{script}</script>\n</body></html>\n")


def attention_html(maps: list, title: str = "") -> str:
    """One layer's attention maps of one text (`patterns.AttentionMap`, unpooled, same tokens; e.g. the head mean and
    every head) as an interactive page: pick a map, hover a cell, read the received attention per key below."""
    if not maps:
        raise ValueError("no maps to show")
    if any(m.pooled != 1 for m in maps):
        raise ValueError("an interactive view needs the exact map (a text of at most --max-size tokens)")
    tokens = maps[0].tokens
    data = {"tokens": tokens,
            "maps": [{"name": "mean over heads" if m.head is None else f"head {m.head}",
                      "pattern": [[round(float(x), 5) for x in row] for row in m.pattern.tolist()]} for m in maps]}
    m = maps[0]
    sub = (f"{m.model['spec']}, layer {m.layer}, {len(tokens)} tokens; colour: sqrt(weight); hover for the tokens "
           "and the weight. Below: attention each key receives (mean over the queries >= 1 that see it).")
    body = ("<div><label>map <select id='head'></select></label></div>\n<canvas id='map'></canvas>\n"
            "<h1 style='margin-top:10px'>attention received per key</h1><div id='received'></div>")
    return _page(title or f"Attention of {m.model['spec']}, layer {m.layer}", sub, body, data, _ATTENTION_JS)


def heads_html(result, title: str = "") -> str:
    """A layer x head heatmap of every per-head statistic of `result` (a `HeadResult`), picked in the page."""
    stats = sorted({k for ly in result.layers for k in ly.heads})
    n_heads = max(ly.n_heads for ly in result.layers)

    def clean(v):
        return None if v is None or v != v or v in (float("inf"), float("-inf")) else float(v)

    data = {"stats": stats, "n_heads": n_heads,
            "layers": [{"layer": ly.layer, "values": {k: [clean(v) for v in ly.heads.get(k, [None] * n_heads)]
                                                      for k in stats}} for ly in result.layers]}
    s = result.settings
    sub = (f"{result.model['spec']}: {s.get('input', '')}, {s.get('n_seqs', '')} x {s.get('seq_len', '')} tokens; "
           "rows: attention layers, columns: heads; hover for the value")
    body = "<div><label>statistic <select id='stat'></select></label> <span id='range'></span></div>\n" \
           "<canvas id='map'></canvas>"
    return _page(title or f"Per-head statistics of {result.model['spec']}", sub, body, data, _HEADS_JS)


def head_results(result) -> list:
    """The per-head results inside a command's result (itself, or the parts of a composite such as `sinks`), those
    with layers: one heads view each."""
    from .metrics.base import HeadResult

    parts = [result] + [v for v in vars(result).values() if isinstance(v, HeadResult)]
    return [p for p in parts if isinstance(p, HeadResult) and p.layers]
