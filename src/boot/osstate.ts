// The boot side of an updatable disk's os/state.json (docs/boot.md, "machines that update
// themselves"), in busybox sh + awk so the initramfs and the drydock init can use it whatever
// the image holds:
//  - OS_STATE_AWK: a small JSON tokenizer. `awk -f osstate.awk FILE get` prints every scalar as
//    path=value (pending.id=abc, abandoned.0.reason=…); `… FILE set path=RAWJSON … +path=RAWJSON`
//    prints the document with those values replaced (or added) and array items appended;
//    `… FILE sh PREFIX` prints the scalars under PREFIX as sh assignments, J_<path>='text' with
//    the JSON escapes undone (for eval: values may hold quotes and newlines).
//    Parsing real JSON instead of grepping lines keeps it independent of how drydock (or a
//    person) formatted the file.
//  - OS_LIB: os_select (which deployment this boot runs; counts tries, abandons a pending
//    deployment that used them all), os_layer (a layer's file and filesystem), os_service_conf
//    (the booted deployment's service, from its image config) and os_confirm (a boot reached "service started": the
//    pending deployment becomes the default, the old default the rollback). Every change is
//    state.json.tmp, fsync, rename, fsync of the directory.

/** The awk program (no `${` inside: it is embedded as is). */
export const OS_STATE_AWK = String.raw`# drydock: read or rewrite a JSON file (os/state.json, os/deployments/*.json)
function fail(msg) { if (!err) err = msg }
function tokenize(s,   i, L, c, j, q) {
  n = 0; i = 1; L = length(s)
  while (i <= L) {
    c = substr(s, i, 1)
    if (c == " " || c == "\t" || c == "\r" || c == "\n") { i++; continue }
    if (c == "{" || c == "}" || c == "[" || c == "]" || c == ":" || c == ",") { tok[++n] = c; i++; continue }
    if (c == "\"") {
      j = i + 1
      while (j <= L) { q = substr(s, j, 1); if (q == "\\") { j += 2; continue }; if (q == "\"") break; j++ }
      if (j > L) { fail("unterminated string"); return }
      tok[++n] = substr(s, i, j - i + 1); i = j + 1; continue
    }
    j = i
    while (j <= L && substr(s, j, 1) ~ /[-+.0-9A-Za-z]/) j++
    if (j == i) { fail("unexpected character " c); return }
    tok[++n] = substr(s, i, j - i); i = j
  }
}
function unq(t) { return substr(t, 2, length(t) - 2) }
# sh mode: a JSON string's text (escapes undone) and a value single-quoted for sh.
function hexval(h,   i, v) { v = 0; h = tolower(h); for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1; return v }
function utf8(c) {
  if (c < 128) return sprintf("%c", c)
  if (c < 2048) return sprintf("%c%c", 192 + int(c / 64), 128 + c % 64)
  return sprintf("%c%c%c", 224 + int(c / 4096), 128 + int(c / 64) % 64, 128 + c % 64)
}
function unesc(s,   out, i, c, L) {
  out = ""; L = length(s)
  for (i = 1; i <= L; i++) {
    c = substr(s, i, 1)
    if (c != "\\") { out = out c; continue }
    c = substr(s, ++i, 1)
    if (c == "n") out = out "\n"
    else if (c == "t") out = out "\t"
    else if (c == "r") out = out "\r"
    else if (c == "b") out = out "\b"
    else if (c == "f") out = out "\f"
    else if (c == "u") { c = hexval(substr(s, i + 1, 4)); i += 4; if (c) out = out utf8(c) }
    else out = out c
  }
  return out
}
function shq(s,   out, i) { out = ""; while ((i = index(s, "'")) > 0) { out = out substr(s, 1, i - 1) "'\"'\"'"; s = substr(s, i + 1) }; return "'" out s "'" }
# J_<path, non-alphanumerics as _>=VALUE for paths under the prefix ("sh" mode).
function shvar(path, v,   name) {
  if (index(path, prefix) != 1) return
  name = path; gsub(/[^A-Za-z0-9_]/, "_", name)
  print "J_" name "=" v
}
function parentOf(k) { if (k !~ /\./) return ""; sub(/\.[^.]*$/, "", k); return k }
function lastOf(k) { sub(/^.*\./, "", k); return k }
# Parses the value at tok[p] (its path is "path") and returns its text, with SET/APPEND applied.
function value(path,   t, out, first, key, kp, v, seen, idx) {
  if (p > n) { fail("unexpected end"); return "" }
  t = tok[p]
  if (t == "{") {
    p++; out = "{"; first = 1; seen = "|"
    while (!err && tok[p] != "}") {
      if (p > n) { fail("unterminated object"); return "" }
      if (!first) { if (tok[p] != ",") { fail("expected , in object"); return "" }; p++ }
      key = tok[p]
      if (substr(key, 1, 1) != "\"" || tok[p + 1] != ":") { fail("expected a key"); return "" }
      p += 2
      kp = (path == "" ? "" : path ".") unq(key)
      v = value(kp)
      seen = seen unq(key) "|"
      out = out (first ? "" : ",") key ":" v; first = 0
    }
    p++
    for (kp in setv) if (parentOf(kp) == path && index(seen, "|" lastOf(kp) "|") == 0) {
      out = out (first ? "" : ",") "\"" lastOf(kp) "\":" setv[kp]; first = 0
    }
    out = out "}"
  } else if (t == "[") {
    p++; out = "["; first = 1; idx = 0
    while (!err && tok[p] != "]") {
      if (p > n) { fail("unterminated array"); return "" }
      if (!first) { if (tok[p] != ",") { fail("expected , in array"); return "" }; p++ }
      v = value(path "." idx); idx++
      out = out (first ? "" : ",") v; first = 0
    }
    p++
    if (path in appendv) out = out (first ? "" : ",") appendv[path]
    if (mode == "get") print path ".length=" idx
    if (mode == "sh") shvar(path ".length", idx)
    out = out "]"
  } else {
    if (t == "," || t == ":" || t == "}" || t == "]") { fail("unexpected " t); return "" }
    p++; out = t
    if (mode == "get") print path "=" (substr(t, 1, 1) == "\"" ? unq(t) : t)
    if (mode == "sh" && t != "null") shvar(path, substr(t, 1, 1) == "\"" ? shq(unesc(unq(t))) : shq(t))
  }
  if (path in setv) return setv[path]
  return out
}
BEGIN {
  file = ARGV[1]; mode = ARGV[2]
  if (mode == "sh") { prefix = ARGV[3]; ARGC = 3 }
  for (i = 3; i < ARGC; i++) {
    a = ARGV[i]; eq = index(a, "=")
    if (substr(a, 1, 1) == "+") appendv[substr(a, 2, eq - 2)] = substr(a, eq + 1)
    else setv[substr(a, 1, eq - 1)] = substr(a, eq + 1)
  }
  s = ""
  while ((r = (getline line < file)) > 0) s = s line "\n"
  if (r < 0) { print "cannot read " file > "/dev/stderr"; exit 2 }
  tokenize(s)
  p = 1
  if (!err && n == 0) fail("empty file")
  if (!err && tok[1] != "{") fail("not a JSON object")
  if (!err) doc = value("")
  if (!err && p <= n) fail("trailing data")
  if (err) { print file ": invalid JSON: " err > "/dev/stderr"; exit 1 }
  if (mode == "set") print doc
  exit 0
}
`;

/** Shell functions (sourced). OS_AWK names the awk program; log() may be defined by the caller. */
export const OS_LIB = `# drydock: deployments of an updatable disk (sourced by the initramfs and the drydock init)
OS_AWK="\${OS_AWK:-/etc/drydock/osstate.awk}"
command -v log > /dev/null 2>&1 || log() { echo "drydock: $*"; }
# os_flat FILE: path=value lines.
os_flat() { awk -f "$OS_AWK" "$1" get; }
# os_field FLAT KEY: the value of KEY ("" when absent or null).
os_field() {
  v="$(printf '%s\\n' "$1" | sed -n "s/^$2=//p" | head -n 1)"
  [ "$v" = null ] && v=
  printf '%s' "$v"
}
# os_write FILE PATH=RAWJSON... [+ARRAY=RAWJSON]: temp file, fsync, rename, fsync the directory.
# FILE.lock (a directory: mkdir is atomic) keeps two writers (the confirm step, a startup script)
# from truncating each other's temp file; one left by a killed writer is taken after 10 s.
os_write() {
  f="$1"; shift
  w=0
  until mkdir "$f.lock" 2> /dev/null; do
    w=$((w + 1)); [ "$w" -ge 100 ] && { log "taking the stale lock $f.lock"; break; }
    usleep 100000
  done
  if awk -f "$OS_AWK" "$f" set "$@" > "$f.tmp" && [ -s "$f.tmp" ] && sync "$f.tmp" && mv -f "$f.tmp" "$f" && sync "\${f%/*}"; then
    rmdir "$f.lock" 2> /dev/null
    return 0
  fi
  rm -f "$f.tmp"; rmdir "$f.lock" 2> /dev/null
  log "cannot rewrite $f"
  return 1
}
# os_jstr TEXT: TEXT as a JSON string (quotes and backslashes escaped; no control characters expected).
os_jstr() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\\\/\\\\\\\\/g; s/"/\\\\"/g')"; }

# os_layer ROOT HEX: "FILE FSTYPE" of the layer with diffID sha256:HEX, by the file name's
# ending (os/layers/HEX.squashfs or HEX.erofs): a squashfs disk upgraded after a --layer-format
# change holds both kinds. Returns 1 when neither is there.
os_layer() {
  for t in squashfs erofs; do
    [ -f "$1/os/layers/$2.$t" ] && { echo "$1/os/layers/$2.$t $t"; return 0; }
  done
  return 1
}

# os_q TEXT: TEXT single-quoted for sh (quotes and newlines kept).
os_q() {
  s="$1" out=
  while :; do
    case "$s" in
      *"'"*) out="$out\${s%%"'"*}'\\''"; s="\${s#*"'"}" ;;
      *) break ;;
    esac
  done
  printf "'%s'" "$out$s"
}

# os_user ROOT USER: "uid:gid:home" of Docker's USER (name, uid, name:group, uid:gid) in ROOT's
# /etc/passwd and /etc/group, as the disk builder resolves it; else why not, and 1.
os_user() {
  u="\${2%%:*}" g=
  case "$2" in *:*) g="\${2#*:}" ;; esac
  ent="$(awk -F: -v u="$u" '$1 == u || (u ~ /^[0-9]+$/ && $3 == u) { print $3 ":" $4 ":" $6; exit }' "$1/etc/passwd" 2> /dev/null)"
  case "$u" in
    ''|*[!0-9]*) [ -n "$ent" ] || { echo "no user \\"$u\\" in the image's /etc/passwd"; return 1; }; uid="\${ent%%:*}" ;;
    *) uid="$u" ;;
  esac
  gid=0 home=/
  if [ -n "$ent" ]; then r="\${ent#*:}"; gid="\${r%%:*}"; home="\${r#*:}"; [ -n "$home" ] || home=/; fi
  case "$g" in
    '') ;;
    *[!0-9]*)
      gid="$(awk -F: -v g="$g" '$1 == g { print $3; exit }' "$1/etc/group" 2> /dev/null)"
      [ -n "$gid" ] || { echo "no group \\"$g\\" in the image's /etc/group"; return 1; } ;;
    *) gid="$g" ;;
  esac
  echo "$uid:$gid:$home"
}

# os_service_conf DEPLOYMENT_JSON ROOT [ID]: the service of that deployment's image config
# (ENTRYPOINT/CMD, ENV, USER, WORKDIR), as sh that the top layer's /.drydock/service.conf sources
# after its own values: the booted deployment decides the command, so a v2 that changes only its
# CMD runs v2's, and a rollback v1's. What drydock disk added (the startup script, and the
# hostname and proxy in SVC_DISK_ENV_*) stays the top layer's. USER is resolved in ROOT (the
# system being booted); one it lacks makes the service fail with the reason, as docker run does.
os_service_conf() {
  vars="$(awk -f "$OS_AWK" "$1" sh imageConfig.)" || return 1
  J_imageConfig_Entrypoint_length=0 J_imageConfig_Cmd_length=0 J_imageConfig_Env_length=0 J_imageConfig_User= J_imageConfig_WorkingDir=
  eval "$vars"
  echo "# drydock: the service of deployment $3, from os/deployments/$3.json's imageConfig (written at boot)"
  echo 'for k in $SVC_ENV_NAMES; do unset "SVC_ENV_$k"; done; SVC_ENV_NAMES='
  argv= argc=0 a0= a1=
  for part in Entrypoint Cmd; do
    eval "n=\\\${J_imageConfig_\${part}_length:-0}"
    i=0
    while [ "$i" -lt "$n" ]; do
      eval "a=\\"\\\${J_imageConfig_\${part}_$i}\\""
      [ "$argc" = 0 ] && a0="$a"
      [ "$argc" = 1 ] && a1="$a"
      argv="$argv $(os_q "$a")"; argc=$((argc + 1)); i=$((i + 1))
    done
  done
  names=' '
  eval "n=\\\${J_imageConfig_Env_length:-0}"
  i=0
  while [ "$i" -lt "$n" ]; do
    eval "e=\\"\\\${J_imageConfig_Env_$i}\\""; i=$((i + 1))
    k="\${e%%=*}" v=
    case "$e" in *=*) v="\${e#*=}" ;; esac
    # Not expressible in sh (docker would pass it; an init shell cannot).
    case "$k" in ''|[0-9]*|*[!A-Za-z0-9_]*) continue ;; esac
    echo "SVC_ENV_$k=$(os_q "$v"); SVC_ENV_NAMES=\\"\\$SVC_ENV_NAMES $k\\""
    names="$names$k "
  done
  user="$J_imageConfig_User" uid= gid= home=/root err=
  if [ -n "$user" ]; then
    if r="$(os_user "$2" "$user")"; then uid="\${r%%:*}"; r="\${r#*:}"; gid="\${r%%:*}"; home="\${r#*:}"; else err="USER $user: $r"; fi
  elif r="$(os_user "$2" root)"; then
    home="\${r#*:*:}"
  fi
  case "$names" in *" PATH "*) ;; *) echo "SVC_ENV_PATH='/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'; SVC_ENV_NAMES=\\"\\$SVC_ENV_NAMES PATH\\"" ;; esac
  case "$names" in *" HOME "*) ;; *) echo "SVC_ENV_HOME=$(os_q "$home"); SVC_ENV_NAMES=\\"\\$SVC_ENV_NAMES HOME\\"" ;; esac
  # The disk's hostname and proxy, where the image does not set them itself.
  echo 'for k in $SVC_DISK_ENV_NAMES; do case " $SVC_ENV_NAMES " in *" $k "*) ;; *) eval "SVC_ENV_$k=\\"\\$SVC_DISK_ENV_$k\\""; SVC_ENV_NAMES="$SVC_ENV_NAMES $k" ;; esac; done'
  # No command, or a bare shell (busybox's CMD ["sh"]): a console shell, respawned like a getty.
  console=
  if [ "$argc" = 0 ]; then
    console=1
    if [ -e "$2/bin/sh" ] || [ -L "$2/bin/sh" ]; then argv=" '/bin/sh'"; else argv=" '/.drydock/bin/sh'"; fi
  elif [ "$argc" -le 2 ]; then
    case "\${a0##*/}" in
      sh|ash|bash|dash|zsh|ksh|mksh) case "$argc:$a1" in 1:|2:-l|2:-i) console=1 ;; esac ;;
    esac
  fi
  if [ -n "$console" ]; then
    echo 'case " $SVC_ENV_NAMES " in *" TERM "*) ;; *) SVC_ENV_TERM=linux; SVC_ENV_NAMES="$SVC_ENV_NAMES TERM" ;; esac'
  fi
  echo "SVC_WORKDIR=$(os_q "\${J_imageConfig_WorkingDir:-/}")"
  echo "SVC_USER=$(os_q "\${uid:+$uid:$gid}")"
  echo "SVC_ARGC=$argc"
  echo "SVC_CONSOLE=$(os_q "$console")"
  if [ -n "$err" ]; then
    echo "SVC_CMD() { echo $(os_q "drydock: deployment $3: $err") >&2; exit 126; }"
  else
    echo "SVC_CMD() { exec$argv; }"
  fi
}

# os_resolve ROOT PATH: the host path of PATH inside ROOT with every symlink resolved within
# ROOT (absolute targets from ROOT, not from /), as the disk builder's inImage does; 1 when
# it does not exist (or loops). Merged-/usr: /sbin/init -> usr/sbin/init -> /lib/systemd/systemd.
os_resolve() {
  rv_root="$1" rv_rest="\${2#/}" rv_cur= rv_hops=0
  while [ -n "$rv_rest" ]; do
    rv_c="\${rv_rest%%/*}"
    case "$rv_rest" in */*) rv_rest="\${rv_rest#*/}" ;; *) rv_rest= ;; esac
    case "$rv_c" in ''|.) continue ;; ..) rv_cur="\${rv_cur%/*}"; continue ;; esac
    if [ -L "$rv_root$rv_cur/$rv_c" ]; then
      rv_hops=$((rv_hops + 1)); [ "$rv_hops" -gt 40 ] && return 1
      rv_t="$(readlink "$rv_root$rv_cur/$rv_c")"
      case "$rv_t" in /*) rv_cur= ;; esac
      rv_rest="\${rv_t#/}\${rv_rest:+/$rv_rest}"
    else
      rv_cur="$rv_cur/$rv_c"
    fi
  done
  [ -e "$rv_root$rv_cur" ] || return 1
  echo "$rv_root$rv_cur"
}

# os_init DEPLOYMENT_JSON ROOT MODE: the init that deployment boots with, decided like the disk
# builder's chooseInit (src/boot/toplayer.ts) from its image config and the system in ROOT, so
# an upgrade from a CMD-style image to one with its own init (or back) boots in the new mode.
# MODE is the disk's --init (auto, image, drydock). Sets OS_INIT (a path in the system) and
# OS_INIT_REASON; returns 1 when the image config is unreadable.
os_init() {
  vars="$(awk -f "$OS_AWK" "$1" sh imageConfig.)" || return 1
  J_imageConfig_Entrypoint_length=0 J_imageConfig_Cmd_length=0 J_imageConfig_Entrypoint_0= J_imageConfig_Cmd_0=
  eval "$vars"
  ni_e="\${J_imageConfig_Entrypoint_length:-0}" ni_c="\${J_imageConfig_Cmd_length:-0}"
  ni_argc=$((ni_e + ni_c))
  if [ "$ni_e" -gt 0 ]; then ni_first="$J_imageConfig_Entrypoint_0"; else ni_first="$J_imageConfig_Cmd_0"; fi
  OS_INIT=/.drydock/init
  if [ "$3" = drydock ]; then OS_INIT_REASON="--init drydock"; return 0; fi
  if [ "$ni_argc" -ge 1 ] && [ "$ni_argc" -le 2 ]; then
    case " /sbin/init /lib/systemd/systemd /usr/lib/systemd/systemd /sbin/openrc-init /usr/sbin/init /init " in
      *" $ni_first "*) if os_resolve "$2" "$ni_first" > /dev/null; then OS_INIT="$ni_first" OS_INIT_REASON="the image command $ni_first is an init"; return 0; fi ;;
    esac
  fi
  ni_sbin="$(os_resolve "$2" /sbin/init)"
  if [ "$3" = image ]; then
    if [ -n "$ni_sbin" ]; then OS_INIT=/sbin/init OS_INIT_REASON="--init image"; else OS_INIT_REASON="--init image, but this deployment has no /sbin/init"; fi
    return 0
  fi
  ni_bb=
  if [ -n "$ni_sbin" ]; then
    if [ "\${ni_sbin##*/}" = busybox ]; then ni_bb=1
    elif [ "$(wc -c < "$ni_sbin")" -le 4194304 ] && grep -q 'BusyBox v' "$ni_sbin"; then ni_bb=1; fi
    if [ -z "$ni_bb" ]; then OS_INIT=/sbin/init OS_INIT_REASON="the image has an init system (/sbin/init)"; return 0; fi
  fi
  if [ "$ni_argc" -gt 0 ]; then OS_INIT_REASON="the image command runs as a supervised service"; return 0; fi
  if [ -n "$ni_sbin" ]; then OS_INIT=/sbin/init OS_INIT_REASON="busybox init (the image has no command)"; return 0; fi
  OS_INIT_REASON="no init and no command: a console shell"
}

# os_select ROOT WANTED NOW: which deployment this boot runs. ROOT holds os/state.json; WANTED is
# drydock.deployment= from the boot menu (an id, "default" or "rollback", or empty); NOW is the
# time for "abandoned" (ISO 8601). Sets OS_DEPLOYMENT, OS_PENDING (1 on a try of the pending
# deployment), OS_DEADLINE (seconds to reach "service started"), OS_NOTE (why). Returns 1 when no
# deployment can be booted.
os_select() {
  st="$1/os/state.json"; dd="$1/os/deployments"
  OS_DEPLOYMENT= OS_PENDING= OS_DEADLINE= OS_NOTE=
  # At boot nothing else writes: a lock left by a writer killed with the machine is stale.
  rmdir "$st.lock" 2> /dev/null
  flat="$(os_flat "$st")" || { log "$st is unreadable or not JSON"; return 1; }
  def="$(os_field "$flat" default)"; rb="$(os_field "$flat" rollback)"
  pid="$(os_field "$flat" pending.id)"; left="$(os_field "$flat" pending.triesLeft)"
  dl="$(os_field "$flat" pending.deadlineSeconds)"; att="$(os_field "$flat" pending.attempts)"
  case "$left" in ''|*[!0-9]*) left=0 ;; esac
  case "$att" in ''|*[!0-9]*) att=0 ;; esac
  case "$dl" in ''|*[!0-9]*) dl=0 ;; esac
  case "$2" in
    default|'') ;;
    rollback)
      if [ -n "$rb" ] && [ -f "$dd/$rb.json" ]; then
        OS_DEPLOYMENT="$rb" OS_NOTE="the rollback deployment, picked at boot"
        os_write "$st" "booted=$(os_jstr "$rb")"; return 0
      fi
      log "drydock.deployment=rollback: this disk has no rollback deployment; booting the default" ;;
    *)
      if [ -f "$dd/$2.json" ]; then
        OS_DEPLOYMENT="$2" OS_NOTE="picked at boot (drydock.deployment=$2)"
        os_write "$st" "booted=$(os_jstr "$2")"; return 0
      fi
      log "drydock.deployment=$2: no such deployment; booting the default" ;;
  esac
  drop=
  if [ -n "$pid" ]; then
    if [ ! -f "$dd/$pid.json" ]; then
      drop="its deployment file os/deployments/$pid.json is missing"
    elif [ "$left" -gt 0 ]; then
      OS_DEPLOYMENT="$pid" OS_PENDING=1 OS_DEADLINE="$dl"
      OS_NOTE="pending deployment, try $((att + 1)) ($((left - 1)) left after this one)"
      os_write "$st" "pending.triesLeft=$((left - 1))" "pending.attempts=$((att + 1))" "booted=$(os_jstr "$pid")"
      return 0
    else
      drop="did not reach service started within \${dl}s on $att boot$([ "$att" = 1 ] || echo s)"
    fi
  fi
  boot="$def"
  if [ -z "$boot" ] || [ ! -f "$dd/$boot.json" ]; then
    if [ -n "$rb" ] && [ -f "$dd/$rb.json" ]; then
      log "the default deployment \${def:-(none)} is missing; booting the rollback $rb"; boot="$rb"
    else
      log "no bootable deployment in $st (default \${def:-none}, rollback \${rb:-none})"; return 1
    fi
  fi
  OS_DEPLOYMENT="$boot" OS_NOTE="the default deployment"
  if [ -n "$drop" ]; then
    log "abandoning deployment $pid: $drop"
    OS_NOTE="the default deployment (pending $pid abandoned: $drop)"
    os_write "$st" pending=null "booted=$(os_jstr "$boot")" \\
      "+abandoned={\\"id\\":$(os_jstr "$pid"),\\"reason\\":$(os_jstr "$drop"),\\"at\\":$(os_jstr "$3")}"
  else
    os_write "$st" "booted=$(os_jstr "$boot")"
  fi
}

# os_confirm ROOT: this boot reached "service started". When it runs the pending deployment,
# that becomes the default and the old default the rollback. (drydock os confirm does the same
# and also deletes what nothing references; this is the fallback without a Node runtime.)
os_confirm() {
  st="$1/os/state.json"
  flat="$(os_flat "$st")" || return 1
  pid="$(os_field "$flat" pending.id)"; booted="$(os_field "$flat" booted)"; def="$(os_field "$flat" default)"
  [ -n "$pid" ] && [ "$pid" = "$booted" ] || return 0
  if [ "$pid" = "$def" ]; then os_write "$st" pending=null; return; fi
  os_write "$st" "default=$(os_jstr "$pid")" "rollback=$(os_jstr "$def")" pending=null
}
`;

/**
 * The boot menu of an updatable disk: the default deployment, and the rollback one (resolved
 * from os/state.json by the initramfs, so the menu never needs rewriting after an upgrade).
 */
export const DEPLOYMENT_MENU = [
  { label: 'drydock', title: 'default deployment', arg: '' },
  { label: 'rollback', title: 'rollback deployment (the one before)', arg: 'drydock.deployment=rollback' },
] as const;

/** Tenths of a second the updatable disk's boot: prompt waits for a choice. */
export const MENU_TIMEOUT = 30;

/** Where the initramfs writes the booted deployment's service (os_service_conf); /run in the system. */
export const DEPLOYMENT_SERVICE_CONF = '/run/drydock/os-service.conf';

/** Names of the files in the initramfs and in the top layer (/.drydock/...). */
export const OS_FILES = { awk: 'osstate.awk', lib: 'os.sh' };
