// The web UI's page and stylesheet, kept as strings so tsc ships them in dist/ with no copy step.
// The page is a shell: ./client/app.ts renders every view into <main> from the JSON endpoints.

export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>drydock registry</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/style.css">
<script type="module" src="/ui/app.js"></script>
</head>
<body>
<header>
  <a class="brand" href="#/">drydock registry</a>
  <input id="search" type="search" placeholder="Search" aria-label="Search" autocomplete="off">
  <span id="who"></span>
</header>
<main id="main"><p class="muted">Loading…</p></main>
</body>
</html>
`;

export const STYLE_CSS = `:root { --fg: #1d232a; --muted: #5f6b76; --line: #d9dee3; --bg: #f6f8fa; --accent: #0b62c4; --danger: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fff; }
header { display: flex; gap: 16px; align-items: center; padding: 10px 20px; background: var(--bg); border-bottom: 1px solid var(--line); }
header .brand { font-weight: 600; color: var(--fg); text-decoration: none; }
header input { flex: 1; max-width: 420px; padding: 5px 9px; border: 1px solid var(--line); border-radius: 6px; font: inherit; }
#who { margin-left: auto; color: var(--muted); }
#who button { margin-left: 8px; }
main { padding: 16px 20px; max-width: 1100px; }
h1 { font-size: 20px; margin: 4px 0 12px; word-break: break-all; }
h2 { font-size: 15px; margin: 22px 0 8px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px 5px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; }
td.num, th.num { text-align: right; }
code, .mono { font: 12.5px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.muted { color: var(--muted); }
.crumbs { margin-bottom: 6px; color: var(--muted); }
.kv td:first-child { width: 160px; color: var(--muted); }
.pull { display: flex; gap: 8px; align-items: center; margin: 4px 0; }
.pull code { flex: 1; padding: 5px 8px; background: var(--bg); border: 1px solid var(--line); border-radius: 6px; }
button { font: inherit; padding: 3px 10px; border: 1px solid var(--line); border-radius: 6px; background: #fff; cursor: pointer; }
button.danger { color: var(--danger); border-color: #f0b6b0; }
form.login { max-width: 320px; display: grid; gap: 8px; margin-top: 24px; }
form.login input { padding: 6px 9px; border: 1px solid var(--line); border-radius: 6px; font: inherit; }
.error { color: var(--danger); }
.badge { display: inline-block; padding: 0 6px; border-radius: 9px; background: var(--bg); border: 1px solid var(--line); font-size: 12px; color: var(--muted); }
`;
