"""The HTML audit's inline stylesheet: system fonts only, print-friendly, no external resources."""

from __future__ import annotations

# Colours are repeated as literals rather than CSS variables in a few places so the page
# degrades gracefully in mail clients and old viewers that drop custom properties.
STYLE = """
:root {
  --ink: #1d2433; --muted: #5b6475; --line: #d8dde6; --panel: #f5f7fa; --paper: #ffffff;
  --pass: #1a7f37; --fail: #b42318; --accent: #2f5bd3;
  --critical: #7a0916; --critical-bg: #fde7e9; --high: #b42318; --high-bg: #fee4e2;
  --medium: #b54708; --medium-bg: #fef0c7; --low: #175cd3; --low-bg: #d1e9ff;
  --info: #475467; --info-bg: #eaecf0;
  --mono: ui-monospace, "SFMono-Regular", "Cascadia Mono", Menlo, Consolas,
    "DejaVu Sans Mono", "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; color: var(--ink); background: var(--paper);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Helvetica Neue",
    Arial, sans-serif;
  font-variant-numeric: tabular-nums;
}
.wrap { max-width: 1120px; margin: 0 auto; padding: 0 28px; }
h1, h2, h3 { line-height: 1.2; letter-spacing: -0.01em; }
h2 { font-size: 1.35rem; margin: 2.6rem 0 0.4rem; padding-bottom: 0.35rem;
  border-bottom: 2px solid var(--ink); }
h3 { font-size: 1.05rem; margin: 1.6rem 0 0.6rem; }
p.lead { color: var(--muted); margin: 0.3rem 0 1rem; max-width: 46em; }
.mono, code { font-family: var(--mono); font-size: 0.88em; }
.muted { color: var(--muted); }

/* verdict banner */
.banner { color: #fff; padding: 30px 0 26px; print-color-adjust: exact;
  -webkit-print-color-adjust: exact; }
.banner.pass { background: var(--pass); }
.banner.fail { background: var(--fail); }
.banner.warn { background: #8a5a00; }
.banner .kicker { text-transform: uppercase; letter-spacing: 0.12em; font-size: 0.78rem;
  margin: 0; opacity: 0.9; }
.banner h1 { font-size: 2.6rem; margin: 0.2rem 0 0.4rem; font-weight: 800; }
.banner .reason { font-size: 1.12rem; margin: 0 0 0.9rem; max-width: 48em; }
.chips { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 8px; }
.chips li { background: rgba(255,255,255,0.16); border: 1px solid rgba(255,255,255,0.45);
  border-radius: 999px; padding: 2px 12px; font-size: 0.88rem; }
.chips li.zero { opacity: 0.6; }
.chips li b { font-weight: 800; }

/* caveat and overview */
.caveat { margin: 22px 0 0; border: 1px solid #f5c26b; border-left: 6px solid #dc6803;
  background: #fffaeb; padding: 12px 18px; border-radius: 6px; }
.caveat h2 { border: 0; margin: 0 0 4px; padding: 0; font-size: 1.05rem; }
.caveat ul { margin: 4px 0 0; padding-left: 1.2em; }
.caveat.ok { border-color: #abefc6; border-left-color: var(--pass); background: #f6fef9; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 22px;
  margin: 22px 0 0; }
dl.facts dt { font-weight: 600; color: var(--muted); }
dl.facts dd { margin: 0; }
nav.toc { margin: 18px 0 0; font-size: 0.92rem; }
nav.toc a { color: var(--accent); text-decoration: none; margin-right: 16px; }

/* tables */
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
thead th { font-size: 0.78rem; text-transform: uppercase; letter-spacing: 0.05em;
  color: var(--muted); border-bottom: 2px solid var(--line); }
td.num, th.num { text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
.text { overflow-wrap: anywhere; }

/* role cards */
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr));
  gap: 14px; margin: 14px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
  background: var(--panel); break-inside: avoid; }
.card h3 { margin: 0; font-size: 0.95rem; text-transform: capitalize; }
.card .score { font-size: 2rem; font-weight: 800; margin: 2px 0 6px; }
.meter { height: 8px; border-radius: 4px; background: #e4e7ec; overflow: hidden;
  print-color-adjust: exact; -webkit-print-color-adjust: exact; }
.meter span { display: block; height: 100%; background: var(--pass); }
.meter.warn span { background: #dc6803; }
.meter.bad span { background: var(--fail); }
.card .counts { font-size: 0.84rem; color: var(--muted); margin-top: 8px; }

/* compliance matrix */
table.matrix { width: auto; font-size: 0.85rem; }
table.matrix th.rule { vertical-align: bottom; padding: 4px 2px;
  border-bottom: 2px solid var(--line); text-transform: none; letter-spacing: 0; }
table.matrix th.rule span { writing-mode: vertical-rl; transform: rotate(180deg);
  white-space: nowrap; font-family: var(--mono); font-size: 0.74rem; color: var(--ink); }
table.matrix td.st { width: 30px; min-width: 30px; height: 28px; text-align: center;
  padding: 0; border: 2px solid #fff; font-weight: 700; print-color-adjust: exact;
  -webkit-print-color-adjust: exact; }
table.matrix th.host { white-space: nowrap; font-weight: 600; }
.st.observed { background: #a6e9bd; color: #0b4f21; }
.st.blocked { background: #fda29b; color: #7a0916; }
.st.missing { background: #fec84b; color: #7a2e0e; }
.st.inconclusive { background: #d0d5dd; color: #344054; }
.st.not-visible { background: #f2f4f7; color: #98a2b3; }
.st.none { background: transparent; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 10px 0; font-size: 0.86rem;
  list-style: none; padding: 0; }
.legend li { display: flex; align-items: center; gap: 6px; }
.legend .sw { display: inline-block; width: 18px; height: 18px; border-radius: 3px;
  text-align: center; line-height: 18px; font-size: 0.75rem; font-weight: 700;
  print-color-adjust: exact; -webkit-print-color-adjust: exact; }

/* findings */
.finding { border: 1px solid var(--line); border-left: 6px solid var(--info);
  border-radius: 8px; padding: 14px 18px; margin: 12px 0; break-inside: avoid; }
.finding.critical { border-left-color: var(--critical); }
.finding.high { border-left-color: var(--high); }
.finding.medium { border-left-color: var(--medium); }
.finding.low { border-left-color: var(--low); }
.finding h4 { margin: 0 0 4px; font-size: 1.02rem; display: flex; gap: 10px;
  align-items: center; flex-wrap: wrap; }
.finding .message { margin: 4px 0 8px; font-size: 1rem; overflow-wrap: anywhere; }
.finding .means { color: var(--muted); font-size: 0.88rem; margin: 0 0 8px; }
.finding .fix-title { font-size: 0.88rem; margin: 8px 0 2px; }
.finding pre.fix { font-size: 0.8rem; overflow-x: auto; white-space: pre-wrap;
  overflow-wrap: anywhere; margin: 0 0 8px; }
.finding dl { display: flex; flex-wrap: wrap; gap: 2px 22px; margin: 0 0 8px;
  font-size: 0.86rem; }
.finding dl div { display: flex; gap: 6px; }
.finding dt { color: var(--muted); }
.finding dd { margin: 0; overflow-wrap: anywhere; }
.finding table { font-size: 0.84rem; }
.badge { display: inline-block; border-radius: 4px; padding: 1px 8px; font-size: 0.72rem;
  font-weight: 800; letter-spacing: 0.06em; text-transform: uppercase;
  print-color-adjust: exact; -webkit-print-color-adjust: exact; }
.badge.critical { background: var(--critical); color: #fff; }
.badge.high { background: var(--high-bg); color: var(--high); }
.badge.medium { background: var(--medium-bg); color: var(--medium); }
.badge.low { background: var(--low-bg); color: var(--low); }
.badge.info { background: var(--info-bg); color: var(--info); }
.outcome-rejected, .outcome-unanswered { color: var(--fail); font-weight: 600; }

/* charts */
svg.chart { width: 100%; height: auto; display: block; margin: 8px 0 14px; }
svg.chart text { font-family: inherit; fill: var(--ink); }
svg.chart .label { font-size: 13px; font-weight: 600; }
svg.chart .label.mono { font-family: var(--mono); font-size: 12.5px; }
svg.chart .sublabel { font-size: 11px; fill: var(--muted); }
svg.chart .tick { font-size: 11px; fill: var(--muted); }
svg.chart .value { font-size: 12px; fill: var(--muted); }
svg.chart .none { font-size: 12.5px; fill: var(--fail); font-style: italic; font-weight: 600; }
svg.chart .grid { stroke: #e4e7ec; stroke-width: 1; }
svg.chart .track { stroke: #98a2b3; stroke-width: 1; stroke-dasharray: 2 3; }
svg.chart .band { fill: #f8f9fb; }
svg.chart .bar { fill: #dc6803; }
.status-ok { color: var(--pass); font-weight: 600; }
.status-bad { color: var(--fail); font-weight: 700; }
.status-warn { color: var(--medium); font-weight: 700; }

footer { margin: 48px 0 30px; padding-top: 12px; border-top: 1px solid var(--line);
  color: var(--muted); font-size: 0.82rem; }

@media print {
  @page { margin: 14mm; }
  body { font-size: 10.5pt; }
  .wrap { max-width: none; padding: 0; }
  .banner { padding: 16px 14px; }
  nav.toc { display: none; }
  h2 { break-after: avoid; }
  .scroll { overflow: visible; }
  tr, .card, svg.chart { break-inside: avoid; }
}
"""
