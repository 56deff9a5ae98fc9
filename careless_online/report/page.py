"""``index.html`` of the live report: one self-contained page that reloads itself.

The figures are embedded as PNG data URIs, so the page needs nothing beside
it (it can be copied or mailed) and never shows a figure from another round.
"""

import base64
import html

import numpy as np

#: Status keys shown at the top of the page, with their labels and formats.
SUMMARY = (("images", "images merged", "{:d}"), ("images_waiting", "images waiting", "{:d}"),
           ("images_converted", "images converted", "{:d}"),
           ("images_per_second", "images per second", "{:.2f}"), ("lag_seconds", "lag (s)", "{:.1f}"),
           ("steps", "gradient steps", "{:d}"), ("elapsed_seconds", "elapsed (s)", "{:.0f}"),
           ("report_fraction", "report share of run time", "{:.1%}"), ("phase", "phase", "{}"))


def _cell(value, fmt):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return fmt.format(value)


def _summary(status):
    items = "".join(f"<div class='box'><div class='v'>{_cell(status.get(key), fmt)}</div>"
                    f"<div class='k'>{label}</div></div>" for key, label, fmt in SUMMARY)
    return f"<div class='summary'>{items}</div>"


def _shell_rows(status):
    rows = []
    for shell in status["shells"] + [dict(status["overall"], overall=True)]:
        name = "overall" if shell.get("overall") else f"{shell['d_max']:.2f}-{shell['d_min']:.2f}"
        rows.append(f"<tr><td>{name}</td><td>{_cell(100 * shell['completeness'], '{:.1f}')}</td>"
                    f"<td>{_cell(shell['multiplicity'], '{:.1f}')}</td><td>{_cell(shell['cchalf'], '{:.3f}')}</td>"
                    f"<td>{_cell(shell['ccanom'], '{:.3f}')}</td></tr>")
    return ("<table><tr><th>shell (Å)</th><th>completeness (%)</th><th>multiplicity</th>"
            "<th>CC1/2 (halves)</th><th>CCanom (halves)</th></tr>" + "".join(rows) + "</table>")


#: The style sheet of the live report's pages.
STYLE = """
body { font-family: sans-serif; margin: 1em; }
.summary { display: flex; flex-wrap: wrap; gap: 0.5em; }
.box { border: 1px solid #ccc; padding: 0.4em 0.8em; }
.v { font-size: 1.4em; font-weight: bold; } .k { color: #555; font-size: 0.85em; }
.hint { background: #fff6d5; border-left: 4px solid #e0a800; padding: 0.6em; margin: 0.8em 0; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; } figure.half { width: 48%; }
figure.wide { width: 97%; } img { width: 100%; }
"""


def figures_html(figures):
    """``<figure>`` elements embedding PNG panels (caption, PNG bytes, full width or not)."""
    return "".join(
        f"<figure class='{'wide' if wide else 'half'}'><img alt='{html.escape(caption)}' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode()}'><figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, png, wide in figures)


def reload_parts(status, refresh_seconds):
    """The page's reload tag, title word and state sentence: reloading while the merge runs, none once finished.

    Parameters
    ----------
    status : dict
        With ``steps`` and, once the merge has ended, ``finished`` True.
    refresh_seconds : int

    Returns
    -------
    (str, str, str)
        The ``<meta>`` refresh tag (empty when finished), ``"finished: "``
        or ``""`` for the title, and the sentence under the heading.
    """
    if status.get("finished"):
        return "", "finished: ", (f"<b>Finished</b> after step {status['steps']}: the merge has ended and this "
                                  "is its final state (the page no longer reloads).")
    return (f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">', "",
            f"Updated after step {status['steps']}; this page reloads every {int(refresh_seconds)} s.")


def render(status, figures, refresh_seconds):
    """The page for a status and its figures.

    Parameters
    ----------
    status : dict
        As written to ``status.json`` (``finished`` True: the final page,
        which no longer reloads).
    figures : list of (str, bytes, bool)
        Caption, PNG bytes and whether the panel takes the page's full width.
    refresh_seconds : int
        The browser reloads the page this often while the merge runs.

    Returns
    -------
    str
    """
    images = figures_html(figures)
    hint = html.escape(status.get("stopping_hint", {}).get("text", ""))
    meta, state, sentence = reload_parts(status, refresh_seconds)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{meta}
<title>careless_online live: {state}{status['images']} images</title>
<style>{STYLE}</style></head><body>
<h1>careless_online live merge</h1>
<p>{sentence}</p>
{_summary(status)}
<div class="hint"><b>Stopping hint:</b> {hint}</div>
{_shell_rows(status)}
{images}
</body></html>
"""
