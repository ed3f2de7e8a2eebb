"""The page for people at ``GET /``: paste a note, see its entities highlighted by label. No external assets.

API offsets are Unicode code points; JavaScript strings index UTF-16 units, so the page slices ``Array.from(text)``.
Text is inserted with DOM text nodes only, never as HTML. The page's script and style are inline and allowed by
their hashes in :data:`PAGE_CSP`; the page loads nothing else.
"""

import base64
import hashlib
import re

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>synthner NER</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1d2330; }
  textarea { width: 100%; min-height: 12rem; font: inherit; padding: .5rem; box-sizing: border-box; }
  input { font: inherit; padding: .3rem; width: 24rem; max-width: 100%; }
  button { font: inherit; padding: .4rem 1.2rem; margin-top: .5rem; cursor: pointer; }
  #result { white-space: pre-wrap; border: 1px solid #ccd; padding: .75rem; margin-top: 1rem; min-height: 3rem; }
  mark { border-radius: 3px; padding: 0 2px; }
  mark span.tag { font-size: .7em; font-weight: 600; margin-left: 3px; opacity: .8; }
  #status { color: #555; margin-top: .5rem; }
  #legend mark { margin-right: .5rem; }
</style>
</head>
<body>
<h1>synthner NER</h1>
<p>Paste a note and press <b>Find entities</b>. The text is sent only to this service.</p>
<label>API key <input id="key" type="password" autocomplete="off"></label>
<textarea id="note" aria-label="note" placeholder="Paste a clinical note here"></textarea>
<button id="run">Find entities</button>
<div id="status" role="status"></div>
<div id="legend"></div>
<div id="result" aria-label="result"></div>
<script>
const palette = ["#ffd166", "#8ecae6", "#b9e769", "#f4a6c6", "#c3b1e1", "#ffb4a2", "#9be7d8", "#e9c46a"];
const colours = {};
function colour(label) {
  if (!(label in colours)) colours[label] = palette[Object.keys(colours).length % palette.length];
  return colours[label];
}
const keyInput = document.getElementById("key");
keyInput.value = sessionStorage.getItem("synthner-key") || "";
document.getElementById("run").addEventListener("click", async () => {
  const text = document.getElementById("note").value;
  const status = document.getElementById("status");
  const result = document.getElementById("result");
  sessionStorage.setItem("synthner-key", keyInput.value);
  status.textContent = "Working...";
  result.replaceChildren();
  let response;
  try {
    response = await fetch("/v1/ner", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + keyInput.value},
      body: JSON.stringify({text}),
    });
  } catch (error) {
    status.textContent = "The service did not answer.";
    return;
  }
  const body = await response.json();
  if (!response.ok) { status.textContent = "Error " + response.status + ": " + body.error; return; }
  const chars = Array.from(text);
  let at = 0;
  for (const entity of body.entities) {
    result.append(document.createTextNode(chars.slice(at, entity.start).join("")));
    const mark = document.createElement("mark");
    mark.style.background = colour(entity.label);
    mark.dataset.label = entity.label;
    mark.append(document.createTextNode(chars.slice(entity.start, entity.end).join("")));
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = entity.label;
    mark.append(tag);
    result.append(mark);
    at = entity.end;
  }
  result.append(document.createTextNode(chars.slice(at).join("")));
  const legend = document.getElementById("legend");
  legend.replaceChildren(...Object.keys(colours).map(label => {
    const m = document.createElement("mark"); m.style.background = colours[label]; m.textContent = label; return m;
  }));
  status.textContent = body.entities.length + " entities, model " + body.model_version;
});
</script>
</body>
</html>
"""


def _inline_hashes(tag: str) -> str:
    """CSP sources allowing exactly the page's inline ``<tag>`` blocks: ``'sha256-…'`` of each block's text."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", PAGE_HTML, flags=re.DOTALL)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


PAGE_CSP = (
    f"default-src 'none'; script-src {_inline_hashes('script')}; style-src {_inline_hashes('style')}; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its own inline script and style (by hash, so nothing injected runs), fetches
to this origin only, no framing, no plugins, no base or form redirection."""
