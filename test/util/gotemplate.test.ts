// Go's text/template as Docker's --format uses it. Cases follow Go's text/template docs and
// outputs recorded from Docker 20.10 (test/compat/ checks the same against a live dockerd).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Template, goStruct, nilMap, nilSlice, sprintf } from '../../src/util/gotemplate/index.js';
import { formatRows, tabwrite, timeAgo, dockerTime } from '../../src/cli/output.js';

const image = () => goStruct('*formatter.imageContext', { ID: 'ebe039ab13e2', Repository: 'bb', Tag: '2', Digest: '<none>' });
const inspect = { Os: 'linux', Size: 1982322, Config: { Cmd: ['/bin/sh'], Entrypoint: null, Env: ['PATH=/bin', 'A=b'], Labels: { b: '2', a: '1' } }, RootFS: { Type: 'layers', Layers: ['sha256:aa', 'sha256:bb'] } };

const ok: { t: string; data: unknown; want: string; missingKey?: 'error' }[] = [
  { t: 'plain text', data: null, want: 'plain text' },
  { t: '{{.ID}}:{{.Tag}}', data: image(), want: 'ebe039ab13e2:2' },
  { t: '{{.ID | printf "%q"}} {{len .Tag}} {{upper .Repository}}', data: image(), want: '"ebe039ab13e2" 1 BB' },
  { t: '{{json .}}', data: image(), want: '{"ID":"ebe039ab13e2","Repository":"bb","Tag":"2","Digest":"\\u003cnone\\u003e"}' },
  { t: '{{json .Config.Cmd}} {{.Config.Cmd}} {{.Size}} {{.Config.Entrypoint}}', data: inspect, want: '["/bin/sh"] [/bin/sh] 1982322 <nil>' },
  { t: '{{.Config.Labels}} {{.Missing}}', data: inspect, want: 'map[a:1 b:2] <no value>' },
  { t: '{{range .RootFS.Layers}}{{.}} {{end}}', data: inspect, want: 'sha256:aa sha256:bb ' },
  { t: '{{range $i, $e := .RootFS.Layers}}{{$i}}={{$e}};{{end}}', data: inspect, want: '0=sha256:aa;1=sha256:bb;' },
  { t: '{{range $k, $v := .Config.Labels}}{{$k}}{{$v}}{{end}}', data: inspect, want: 'a1b2' },
  { t: '{{range .Config.Entrypoint}}x{{else}}empty{{end}}', data: inspect, want: 'empty' },
  { t: '{{index .RootFS.Layers 1}}|{{index .Config.Labels "a"}}', data: inspect, want: 'sha256:bb|1' },
  { t: '{{join .Config.Env ","}}|{{split "a,b" ","}}|{{title "hello world"}}|{{lower "AB"}}', data: inspect, want: 'PATH=/bin,A=b|[a b]|Hello World|ab' },
  { t: '{{if .Config.Cmd}}yes{{else}}no{{end}} {{with .Config.Entrypoint}}E{{else}}noE{{end}}', data: inspect, want: 'yes noE' },
  { t: '{{with .Config}}{{.Cmd}}{{end}}', data: inspect, want: '[/bin/sh]' },
  { t: '{{if eq .Os "windows"}}W{{else if eq .Os "linux"}}L{{else}}?{{end}}', data: inspect, want: 'L' },
  { t: '{{if and .Os (gt .Size 1000)}}big{{end}}{{if or .Config.Entrypoint .Os}} or{{end}}{{if not .Config.Entrypoint}} not{{end}}', data: inspect, want: 'big or not' },
  { t: '{{eq .Os "mac" "linux"}} {{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{ge "b" "a"}}', data: inspect, want: 'true true true true true' },
  { t: '{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}', data: null, want: '2' },
  { t: '{{$}}{{$.Os}}', data: { Os: 'linux' }, want: 'map[Os:linux]linux' },
  { t: '{{range .}}{{if eq . 3}}{{break}}{{end}}{{if eq . 1}}{{continue}}{{end}}{{.}}{{end}}', data: [0, 1, 2, 3, 4], want: '02' },
  { t: '{{- " a " -}}  x  {{- 3 }} {{/* a comment */}}!', data: null, want: ' a x3 !' },
  { t: '{{printf "%5.2f|%-4d|%x|%v|%s|%05d|%t" 3.14159 7 255 . "s" 42 true}}', data: [1, 'a'], want: ' 3.14|7   |ff|[1 a]|s|00042|true' },
  { t: '{{printf "%d"}} {{printf "%d" "x"}} {{printf "a" 1}}', data: null, want: '%!d(MISSING) %!d(string=x) a%!(EXTRA int=1)' },
  { t: '{{print 1 2 "a" 3}}|{{println 1 "a"}}', data: null, want: '1 2a3|1 a\n' },
  { t: '{{len .}} {{len "héllo"}} {{slice "abcdef" 1 3}} {{slice .}}', data: [1, 2, 3], want: '3 6 bc [1 2 3]' },
  { t: '{{(index .RootFS.Layers 0) | printf "%s!"}} {{(.Config).Cmd}}', data: inspect, want: 'sha256:aa! [/bin/sh]' },
  { t: '{{pad .Tag 1 2}}|{{truncate .Repository 1}}', data: image(), want: ' 2  |b' },
  // A typed Go field that is nil (Docker's Config.Entrypoint, Config.Labels) prints empty, not <nil>.
  { t: '{{.E}} {{.L}} {{json .E}} {{len .L}} {{if .E}}x{{else}}empty{{end}} {{range .E}}x{{else}}none{{end}} [{{index .L "a"}}]', data: { E: nilSlice, L: nilMap }, want: '[] map[] null 0 empty none []' },
  { t: '{{define "T"}}[{{.}}]{{end}}{{template "T" .Tag}}', data: image(), want: '[2]' },
  { t: "{{html \"<a&b>\"}} {{urlquery \"a b&c\"}} {{'a'}} {{0x10}} {{1e3}} {{-2}} {{`raw`}}", data: null, want: '&lt;a&amp;b&gt; a+b%26c 97 16 1000 -2 raw' },
];

test('templates render as Go text/template with Docker\'s functions', () => {
  for (const c of ok) {
    assert.equal(Template.parse(c.t).execute(c.data, { missingKey: c.missingKey }), c.want, c.t);
  }
});

const errors: { t: string; data: unknown; want: string; missingKey?: 'error' }[] = [
  { t: '{{.Foo}}', data: image(), want: 'template: :1:2: executing "" at <.Foo>: can\'t evaluate field Foo in type *formatter.imageContext' },
  { t: '{{.ID.Foo}}', data: image(), want: 'template: :1:5: executing "" at <.ID.Foo>: can\'t evaluate field Foo in type string' },
  { t: '{{.Foo}}', data: inspect, missingKey: 'error', want: 'template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo"' },
  { t: '{{.Config.Foo}}', data: inspect, missingKey: 'error', want: 'template: :1:9: executing "" at <.Config.Foo>: map has no entry for key "Foo"' },
  { t: '{{.ID', data: image(), want: 'template: :1: unclosed action' },
  { t: '{{foo .ID}}', data: image(), want: 'template: :1: function "foo" not defined' },
  { t: '{{end}}', data: null, want: 'template: :1: unexpected {{end}}' },
  { t: 'a\n{{if 1}}', data: null, want: 'template: :2: unexpected EOF' },
  { t: '{{$x}}', data: null, want: 'template: :1: undefined variable "$x"' },
  { t: '{{index .RootFS.Layers 5}}', data: inspect, want: 'template: :1:2: executing "" at <index .RootFS.Layers 5>: error calling index: index out of range: 5' },
  { t: '{{len 3}}', data: null, want: 'template: :1:2: executing "" at <len 3>: error calling len: len of type int' },
  { t: '{{range 1.5}}{{end}}', data: null, want: 'template: :1:8: executing "" at <1.5>: range can\'t iterate over 1.5' },
  { t: '{{template "nope"}}', data: null, want: 'template: :1:11: executing "" at <{{template "nope"}}>: template "nope" not defined' },
];

test('template errors read like Go\'s', () => {
  for (const c of errors) {
    assert.throws(() => Template.parse(c.t).execute(c.data, { missingKey: c.missingKey }), (e: Error) => { assert.equal(e.message, c.want, c.t); return true; });
  }
});

test('sprintf follows fmt for the common verbs', () => {
  assert.equal(sprintf('%s=%q %3d|%-3s|%%', ['a', 'b"c', 5, 'x']), 'a="b\\"c"   5|x  |%');
  assert.equal(sprintf('%.3s %e %g', ['abcdef', 1234.5, 0.5]), 'abc 1.234500e+03 0.5');
});

test('table formats print a header row and align columns like Docker\'s tabwriter', async () => {
  const rows = [image(), goStruct('*formatter.imageContext', { ID: '257ac8dc3d77', Repository: 'busybox-long-name', Tag: 'latest', Digest: '<none>' })];
  const headers = { ID: 'IMAGE ID', Repository: 'REPOSITORY', Tag: 'TAG', Digest: 'DIGEST' };
  assert.equal(await formatRows('table {{.Repository}}\\t{{upper .Tag}}', rows, { defaultFormat: '', headers }),
    'REPOSITORY          TAG\nbb                  2\nbusybox-long-name   LATEST\n');
  assert.equal(await formatRows(undefined, rows.slice(0, 1), { defaultFormat: 'table {{.ID}}\t{{.Tag}}', headers }), 'IMAGE ID       TAG\nebe039ab13e2   2\n');
  assert.equal(await formatRows('json', rows.slice(0, 1), { defaultFormat: '', headers }), '{"ID":"ebe039ab13e2","Repository":"bb","Tag":"2","Digest":"\\u003cnone\\u003e"}\n');
  assert.equal(await formatRows('{{.ID}}\\t{{.Tag}}', rows.slice(0, 1), { defaultFormat: '', headers }), 'ebe039ab13e2\t2\n');
  await assert.rejects(formatRows('{{.Nope}}', rows, { defaultFormat: '', headers }), (e: Error) => e.message === 'template parsing error: template: :1:2: executing "" at <.Nope>: can\'t evaluate field Nope in type *formatter.imageContext');
  // A column is a run of lines that have a cell there; a line's last cell is not padded.
  assert.equal(tabwrite('a\tb\tc\nlonger-than-ten\tx\nz'), `a${' '.repeat(17)}b         c\nlonger-than-ten   x\nz`);
});

test('times print as Docker prints them', () => {
  const now = Date.parse('2026-12-01T16:00:00Z');
  const cases: [number, string][] = [[0.5, 'Less than a second ago'], [1, '1 second ago'], [59, '59 seconds ago'], [90, 'About a minute ago'], [600, '10 minutes ago'], [3600, 'About an hour ago'], [5 * 3600, '5 hours ago'], [3 * 86400, '3 days ago'], [20 * 86400, '2 weeks ago'], [100 * 86400, '3 months ago'], [800 * 86400, '2 years ago']];
  for (const [ago, want] of cases) assert.equal(timeAgo(new Date(now - ago * 1000).toISOString(), now), want);
  assert.equal(dockerTime('2026-12-01T15:52:05.123456789Z'), '2026-12-01 15:52:05 +0000 UTC');
});
