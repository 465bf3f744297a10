#!/usr/bin/env bash
# backup.sh — back up zulip-event-listeners while it runs: its database
# (PostgreSQL: a pg_dump of the daemon's tables, custom format; SQLite: an
# online backup of the file), the config file and the zuliprc files it
# names, into a new timestamped directory (mode 700; the files keep mode
# 600). Prints what it wrote. The README's "Backup and restore" says how to
# restore it and what a restore recovers.
#
# Usage: backup.sh [--config FILE] [--database URL] [--out DIR]
#   --config FILE   the daemon's config (default
#                   /etc/zulip-event-listeners/config.toml); its
#                   [database] url, password_file / password_env and
#                   zuliprc paths are read from it (with python3)
#   --database URL  back up this database instead of the config's (the
#                   config is then copied only if --config is given)
#   --out DIR       where the timestamped directory is made (default: .)
#
# Needs pg_dump for PostgreSQL; for SQLite, sqlite3 if installed, else
# python3's sqlite3 module (VACUUM INTO). Exits 1 on any failure, 2 on bad
# usage.

set -euo pipefail

name=zulip-event-listeners
config=
config_given=
database=
out=.

usage() {
    sed -n '9,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
        --config) [ $# -ge 2 ] || usage; config=$2; config_given=1; shift 2 ;;
        --database) [ $# -ge 2 ] || usage; database=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "$name backup: unknown argument: $1" >&2; usage ;;
    esac
done
if [ -z "$config" ] && [ -z "$database" ]; then
    config=/etc/zulip-event-listeners/config.toml
    config_given=1
fi

die() {
    echo "$name backup: $*" >&2
    exit 1
}

# Prints one line per setting read from the config: `url <URL>`,
# `password_file <PATH>`, `password_env <NAME>`, `zuliprc <PATH>`.
read_config() {
    python3 - "$1" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    cfg = tomllib.load(f)
db = cfg.get("database", {})
for key in ("url", "password_file", "password_env"):
    if isinstance(db.get(key), str):
        print(key, db[key])
zulip = cfg.get("zulip", {})
for org in zulip if isinstance(zulip, list) else [zulip]:
    if isinstance(org.get("zuliprc"), str):
        print("zuliprc", org["zuliprc"])
EOF
}

password_file=
password_env=
zuliprcs=()
if [ -n "$config_given" ]; then
    [ -r "$config" ] || die "cannot read the config file $config"
    settings=$(read_config "$config") || die "cannot parse the config file $config"
    while IFS=' ' read -r key value; do
        case $key in
            url) [ -n "$database" ] || database=$value ;;
            password_file) password_file=$value ;;
            password_env) password_env=$value ;;
            zuliprc) zuliprcs+=("$value") ;;
        esac
    done <<<"$settings"
fi
# The daemon's default, as when the config names no database.
[ -n "$database" ] || database=sqlite://zulip-event-listeners.db

case $database in
    postgres://*|postgresql://*) ;;
    sqlite:*)
        db=${database#sqlite:}
        db=${db#//}
        db=${db%%\?*}
        [ -f "$db" ] || die "no SQLite database at $db"
        ;;
    *) die "not a sqlite: or postgres:// URL: $database" ;;
esac

umask 077
dir="$out/$name-backup-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
mkdir "$dir" || die "cannot create $dir"
# A failed backup leaves no directory that looks like one.
trap 'rm -rf -- "$dir"' EXIT
written=()

case $database in
    postgres://*|postgresql://*)
        command -v pg_dump >/dev/null 2>&1 || die "pg_dump is not installed"
        if [ -n "$password_file" ]; then
            PGPASSWORD=$(head -n 1 "$password_file") || die "cannot read $password_file"
            export PGPASSWORD
        elif [ -n "$password_env" ]; then
            PGPASSWORD=${!password_env:?"$password_env is not set"}
            export PGPASSWORD
        fi
        file="$dir/database.pgdump"
        # One consistent snapshot of the daemon's tables, whatever it
        # writes meanwhile.
        pg_dump --format=custom --no-owner --no-privileges \
            --table='event_listeners_*' --table=_sqlx_migrations \
            --file="$file" --dbname="$database" || die "pg_dump failed"
        written+=("$file (pg_dump custom format: restore with pg_restore)")
        ;;
    sqlite:*)
        file="$dir/events.db"
        # An online backup: a consistent copy while the daemon writes.
        if command -v sqlite3 >/dev/null 2>&1; then
            sqlite3 "$db" ".backup '$file'" || die "sqlite3 .backup failed"
        else
            python3 - "$db" "$file" <<'EOF' || die "VACUUM INTO failed"
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("VACUUM INTO ?", (sys.argv[2],))
conn.close()
EOF
        fi
        chmod 600 "$file"
        written+=("$file (SQLite database: copy it back to $db)")
        ;;
esac

if [ -n "$config_given" ]; then
    cp -p "$config" "$dir/config.toml"
    chmod 600 "$dir/config.toml"
    written+=("$dir/config.toml (from $config)")
    i=0
    for rc in "${zuliprcs[@]}"; do
        i=$((i + 1))
        target="$dir/zuliprc"
        [ "${#zuliprcs[@]}" -eq 1 ] || target="$dir/zuliprc.$i"
        cp -p "$rc" "$target" || die "cannot copy the zuliprc $rc"
        chmod 600 "$target"
        written+=("$target (from $rc)")
    done
fi

trap - EXIT
echo "$name backup in $dir:"
for line in "${written[@]}"; do
    echo "  $line"
done
