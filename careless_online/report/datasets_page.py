"""``index.html`` of the live report of several datasets.

One self-contained page that reloads itself (the panels embedded as PNG data
URIs, the style of :mod:`careless_online.report.page`): the progress of the
whole merge, a table of the datasets linking to each one's own page
(``dataset_<i>/index.html``), the difference peaks and the panels.
"""

import html

from careless_online.report.page import STYLE, _cell, _summary, figures_html, reload_parts


def _dataset_rows(status):
    rows = []
    for entry in status["datasets"]:
        overall = entry["overall"]
        reference = "" if entry["reference"] is None else f"{entry['reference']}"
        rows.append(f"<tr><td>{entry['number']}</td><td><a href='{html.escape(entry['page'])}'>"
                    f"{html.escape(entry['name'])}</a></td><td>{reference}</td><td>{entry['images']}</td>"
                    f"<td>{entry['images_converted']}</td>"
                    f"<td>{_cell(_percent(overall['completeness']), '{:.1f}')}</td>"
                    f"<td>{_cell(overall['multiplicity'], '{:.1f}')}</td><td>{_cell(overall['cchalf'], '{:.3f}')}</td>"
                    f"<td>{_cell(overall['ccanom'], '{:.3f}')}</td>"
                    f"<td>{_cell(entry['d_cchalf_0.3'], '{:.2f}')}</td></tr>")
    return ("<table><tr><th>#</th><th>dataset (its page)</th><th>reference</th><th>images merged</th>"
            "<th>images converted</th><th>completeness (%)</th><th>multiplicity</th><th>CC1/2</th><th>CCanom</th>"
            "<th>CC1/2 = 0.3 at (Å)</th></tr>" + "".join(rows) + "</table>")


def _percent(value):
    return None if value is None else 100.0 * value


def _hints(status):
    items = "".join(f"<li><b>{html.escape(entry['name'])}:</b> {html.escape(entry['stopping_hint'])}</li>"
                    for entry in status["datasets"])
    return f"<div class='hint'><b>Stopping hints</b><ul>{items}</ul></div>"


def _difference(record, names):
    title = (f"<h3>{html.escape(names[record['dataset']])} − {html.escape(names[record['reference']])}: "
             f"{record['n_reflections']} reflections, rms ΔF {_cell(record['rms_df'], '{:.3g}')}, "
             f"rms σ(ΔF) {_cell(record['rms_sigdf'], '{:.3g}')} (at {record['images']} images)</h3>")
    if not record["peaks"]:
        return title
    peaks = "".join(f"<tr><td>{html.escape(p['peak'])}</td><td>{_cell(p['height_sigma'], '{:+.1f}')}</td>"
                    f"<td>{html.escape(p['nearest_atom'] or '')}</td><td>{_cell(p['distance'], '{:.1f}')}</td></tr>"
                    for p in record["peaks"])
    atoms = "".join(f"<tr><td>{html.escape(a['atom'])}</td><td>{_cell(a['height_sigma'], '{:+.1f}')}</td></tr>"
                    for a in record["atoms"])
    return (title + "<table style='display:inline-table;margin-right:2em'><tr><th>peak</th><th>height (σ)</th>"
            "<th>nearest atom</th><th>distance (Å)</th></tr>" + peaks + "</table>"
            "<table style='display:inline-table'><tr><th>followed atom</th><th>height (σ)</th></tr>" + atoms
            + "</table>")


def render_datasets(status, figures, refresh_seconds):
    """The top page of a live merge of several datasets.

    Parameters
    ----------
    status : dict
        As written to the top ``status.json``
        (see :mod:`careless_online.report.datasets`).
    figures : list of (str, bytes, bool)
        Caption, PNG bytes and whether the panel takes the page's full width.
    refresh_seconds : int

    Returns
    -------
    str
    """
    names = [entry["name"] for entry in status["datasets"]]
    differences = "".join(_difference(record, names) for record in status["differences"])
    meta, state, sentence = reload_parts(status, refresh_seconds)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{meta}
<title>careless_online live: {state}{len(names)} datasets, {status['images']} images</title>
<style>{STYLE}</style></head><body>
<h1>careless_online live merge of {len(names)} datasets</h1>
<p>{sentence}
Each dataset's shells, CC1/2 and CCanom are on its own page (linked below).</p>
{_summary(status)}
<h2>Datasets</h2>
{_dataset_rows(status)}
{_hints(status)}
<h2>Differences</h2>
{differences or "<p>No dataset has a reference to take differences against.</p>"}
{figures_html(figures)}
</body></html>
"""
