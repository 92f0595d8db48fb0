#!/usr/bin/env bash
# ensure-services.sh - make sure everything Fieldpool needs at run/test time is there:
#   * PostgreSQL reachable at DATABASE_URL / TEST_DATABASE_URL (installed + started if local),
#   * PostGIS available on that server (package installed if local),
#   * the app and test databases exist, each with the postgis extension,
#   * Redis answering at REDIS_URL (installed + started if local).
#
# Called first by `make run` and `make test`. Checks first and only acts when something is
# missing, so the all-good path takes a few tens of milliseconds. Idempotent, never prompts
# (works with CI=true and no stdin). Installing/starting needs root (or passwordless sudo)
# and is only done for a local host (127.0.0.1 / localhost / ::1 / unix socket); otherwise
# it stops with one sentence on stderr saying what to install or start, and exits 1.
#
# Environment:
#   MIGRATION_DATABASE_URL  the tables' owner, who creates the databases; default DATABASE_URL
#   DATABASE_URL       default postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool (the app's own
#                      role is created later, by `fieldpool db upgrade`)
#   TEST_DATABASE_URL  default: same server as the owner's URL, database fieldpool_test
#   REDIS_URL          default redis://127.0.0.1:6379/0
set -euo pipefail

PROG=ensure-services
# The owner creates databases and extensions; the app's role could not.
DATABASE_URL=${MIGRATION_DATABASE_URL:-${DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool}}
if [[ -z ${TEST_DATABASE_URL:-} ]]; then
    # Same server/credentials as DATABASE_URL, database fieldpool_test (keep any ?query).
    _base=${DATABASE_URL%%\?*}
    _query=${DATABASE_URL:${#_base}}
    TEST_DATABASE_URL="${_base%/*}/fieldpool_test${_query}"
fi
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}

export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}
WAIT_STEPS=150          # 150 x 0.1 s = 15 s max for any "wait until it answers" loop
APT_UPDATED=0
APT_LOG=
ORIG_PGPASSWORD_SET=${PGPASSWORD+x}
ORIG_PGPASSWORD=${PGPASSWORD:-}

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- helpers: privileges, apt
SUDO_OK=
can_root() {
    [[ $EUID -eq 0 ]] && return 0
    if [[ -z $SUDO_OK ]]; then
        if have sudo && sudo -n true </dev/null >/dev/null 2>&1; then SUDO_OK=1; else SUDO_OK=0; fi
    fi
    [[ $SUDO_OK == 1 ]]
}
as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}
as_postgres() {   # run a command as the postgres OS user (peer auth over the unix socket)
    (
        cd /    # the caller's cwd may not be readable by postgres
        if [[ $EUID -eq 0 ]]; then
            # shellcheck disable=SC2016  # expanded by the inner shell
            if have runuser; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c '"$0" "$@"' -- "$@"; fi
        else
            sudo -n -u postgres "$@"
        fi
    )
}
# detached CMD... : run CMD with every fd above 2 closed, so a daemon it starts doesn't keep
# a caller's pipes (make's jobserver, CI log pipes, ...) open forever.
detached() {
    (
        for fd in "/proc/$BASHPID/fd/"*; do
            fd=${fd##*/}
            if [[ $fd -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        "$@"
    )
}
sudo_hint() { [[ $EUID -eq 0 ]] && printf '' || printf 'sudo '; }

# apt_install WHAT PKG... : install packages or die with one sentence.
apt_install() {
    local what=$1 cmd; shift
    cmd="$(sudo_hint)apt-get install $*"
    have apt-get || die "$what is missing and apt-get is not available here; install $* with your package manager"
    can_root || die "$what is missing; install it with: $cmd"
    [[ -n $APT_LOG ]] || APT_LOG=$(mktemp "${TMPDIR:-/tmp}/fieldpool-ensure-services-apt.XXXXXX.log")
    if [[ $APT_UPDATED == 0 ]]; then
        say "running apt-get update"
        # A broken third-party source should not stop us: the install below is what counts.
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >"$APT_LOG" 2>&1 || true
        APT_UPDATED=1
    fi
    say "installing $* (apt-get, log: $APT_LOG)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "$@" </dev/null >>"$APT_LOG" 2>&1 \
        || die "apt-get install $* failed (see $APT_LOG); install $what by hand with: $cmd"
    hash -r
}

is_local_host() {
    case $1 in
        ''|/*|localhost|localhost.localdomain|::1|127.*) return 0 ;;
        *) return 1 ;;
    esac
}

tcp_open() {   # tcp_open HOST PORT : is something listening there?
    # shellcheck disable=SC2016  # expanded by the inner shell
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

urldecode() {
    local s=$1
    if [[ $s == *%* ]]; then printf '%b' "${s//%/\\x}"; else printf '%s' "$s"; fi
}

# parse_url URL : sets U_SCHEME U_USER U_PASS U_HOST U_PORT U_PATH (path without leading /)
parse_url() {
    local url=$1 rest authority userinfo hostport
    U_SCHEME=${url%%://*}
    U_SCHEME=${U_SCHEME%%+*}                 # postgresql+psycopg -> postgresql
    rest=${url#*://}
    rest=${rest%%\?*}                        # drop ?query
    rest=${rest%%#*}
    authority=${rest%%/*}
    if [[ $rest == */* ]]; then U_PATH=${rest#*/}; else U_PATH=; fi
    U_USER='' U_PASS=''
    if [[ $authority == *@* ]]; then
        userinfo=${authority%@*}
        hostport=${authority##*@}
        if [[ $userinfo == *:* ]]; then
            U_USER=$(urldecode "${userinfo%%:*}")
            U_PASS=$(urldecode "${userinfo#*:}")
        else
            U_USER=$(urldecode "$userinfo")
        fi
    else
        hostport=$authority
    fi
    U_PORT=
    if [[ $hostport == \[* ]]; then            # [::1]:5432
        U_HOST=${hostport#\[}
        U_HOST=${U_HOST%%\]*}
        hostport=${hostport#*\]}
        [[ $hostport == :* ]] && U_PORT=${hostport#:}
    elif [[ $hostport == *:* ]]; then
        U_HOST=${hostport%%:*}
        U_PORT=${hostport#*:}
    else
        U_HOST=$hostport
    fi
    U_HOST=$(urldecode "$U_HOST")
    U_PATH=$(urldecode "$U_PATH")
}

# ---------------------------------------------------------------- PostgreSQL
# Per-URL connection settings, set by pg_use_url.
PG_HOST='' PG_PORT='' PG_USER='' PG_DB='' PG_WHERE='' PG_ARGS=()
pg_use_url() {
    local var=$1 url=$2
    parse_url "$url"
    case $U_SCHEME in
        postgresql|postgres) ;;
        *) die "$var must be a postgresql:// URL (got scheme '$U_SCHEME')" ;;
    esac
    PG_HOST=$U_HOST PG_PORT=${U_PORT:-5432} PG_USER=$U_USER PG_DB=$U_PATH
    [[ -n $PG_DB ]] || die "$var has no database name: $url"
    PG_ARGS=(-p "$PG_PORT")
    [[ -n $PG_HOST ]] && PG_ARGS+=(-h "$PG_HOST")
    [[ -n $PG_USER ]] && PG_ARGS+=(-U "$PG_USER")
    PG_WHERE="${PG_HOST:-localhost}:$PG_PORT"
    if [[ -n $U_PASS ]]; then
        export PGPASSWORD=$U_PASS
    elif [[ -n $ORIG_PGPASSWORD_SET ]]; then
        export PGPASSWORD=$ORIG_PGPASSWORD
    else
        unset PGPASSWORD
    fi
}
pg_psql() {   # pg_psql DB psql-args... (never prompts, ignores ~/.psqlrc)
    local db=$1; shift
    psql -X -w -q -v ON_ERROR_STOP=1 "${PG_ARGS[@]}" -d "$db" "$@" </dev/null
}
sql_lit() { printf "'%s'" "${1//\'/\'\'}"; }          # SQL string literal
sql_ident() { printf '"%s"' "${1//\"/\"\"}"; }        # SQL identifier
pg_ready() { pg_isready -q -t 3 "${PG_ARGS[@]}" -d postgres >/dev/null 2>&1; }

pg_server_installed() {
    have pg_lsclusters && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# start_pg_cluster PORT : start the (Debian pg_lsclusters) cluster(s) configured on PORT.
start_pg_cluster() {
    local port=$1 ver name cport status owner _datadir logfile found=0 ours
    have pg_lsclusters || {
        can_root || die "PostgreSQL is not running on $PG_WHERE; start it with: $(sudo_hint)service postgresql start"
        detached as_root service postgresql start </dev/null >/dev/null 2>&1 \
            || die "PostgreSQL is not running on $PG_WHERE and 'service postgresql start' failed; start it by hand"
        say "started PostgreSQL (service postgresql start)"
        return 0
    }
    if [[ -z $(pg_lsclusters -h 2>/dev/null) ]]; then
        ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
        [[ -n $ver ]] || die "PostgreSQL server binaries not found; install them with: $(sudo_hint)apt-get install postgresql"
        can_root || die "no PostgreSQL cluster exists; create one with: sudo pg_createcluster -p $port $ver main --start"
        as_root pg_createcluster -p "$port" "$ver" main </dev/null >/dev/null \
            || die "pg_createcluster -p $port $ver main failed; create a cluster by hand with: pg_createcluster -p $port $ver main --start"
        say "created PostgreSQL cluster $ver/main on port $port"
        PG_FRESH=1
    fi
    while read -r ver name cport status owner _datadir logfile; do
        [[ $cport == "$port" ]] || continue
        found=1
        [[ $status == down ]] || continue
        ours=0
        [[ $owner == "$(id -un)" ]] && ours=1
        if [[ $ours == 0 ]] && ! can_root; then
            die "PostgreSQL $ver/$name on port $port is down; start it with: sudo pg_ctlcluster $ver $name start"
        fi
        if { if [[ $ours == 1 ]]; then detached pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
             else detached as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start; fi; } </dev/null >/dev/null 2>&1; then
            say "started PostgreSQL $ver/$name on port $port (pg_ctlcluster)"
        elif can_root && detached as_root service postgresql start </dev/null >/dev/null 2>&1; then
            say "started PostgreSQL (service postgresql start)"
        else
            die "could not start PostgreSQL $ver/$name on port $port (see $logfile); start it with: $(sudo_hint)pg_ctlcluster $ver $name start"
        fi
    done < <(pg_lsclusters -h 2>/dev/null)
    [[ $found == 1 ]] || die "no PostgreSQL cluster is configured on port $port (see pg_lsclusters); fix the port in DATABASE_URL or create one with: $(sudo_hint)pg_createcluster -p $port <version> main --start"
}

wait_pg() {
    local i
    for ((i = 0; i < WAIT_STEPS; i++)); do
        pg_ready && return 0
        sleep 0.1
    done
    die "PostgreSQL on $PG_WHERE did not accept connections within 15 s; check its log under /var/log/postgresql/"
}

# On a server this script just installed/created: make the URL's role able to log in the way
# the URL says (trust on loopback when the URL has no password, else set the password).
bootstrap_fresh_auth() {
    local user=${PG_USER:-$(id -un)} hba
    local -a sock=(-p "$PG_PORT")
    [[ $PG_HOST == /* ]] && sock+=(-h "$PG_HOST")
    as_postgres psql -X -w -q -v ON_ERROR_STOP=1 "${sock[@]}" -d postgres -v u="$user" -v pw="${U_PASS:-}" >/dev/null <<'SQL' || return 1
SELECT format('CREATE ROLE %I LOGIN SUPERUSER', :'u')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'u') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'u', :'pw') WHERE :'pw' <> '' \gexec
SQL
    if [[ -z ${U_PASS:-} ]]; then
        hba=$(as_postgres psql -X -w -tAq "${sock[@]}" -d postgres -c 'SHOW hba_file' </dev/null) || return 1
        local lines="# added by Fieldpool scripts/ensure-services.sh (fresh local install): password-less login for $user"
        if [[ -z $PG_HOST || $PG_HOST == /* ]]; then
            lines+=$'\n'"local all $user trust"
        else
            lines+=$'\n'"host all $user 127.0.0.1/32 trust"$'\n'"host all $user ::1/128 trust"
        fi
        # Prepend (first match wins in pg_hba.conf); rewrite in place to keep owner/mode.
        # shellcheck disable=SC2016  # expanded by the inner shell
        as_postgres sh -c 'tmp=$(mktemp) && { printf "%s\n" "$2"; cat "$1"; } >"$tmp" && cat "$tmp" >"$1"; rc=$?; rm -f "$tmp"; exit $rc' \
            _ "$hba" "$lines" </dev/null || return 1
        as_postgres psql -X -w -tAq "${sock[@]}" -d postgres -c 'SELECT pg_reload_conf()' </dev/null >/dev/null || return 1
        say "allowed password-less login for $user over loopback in $hba (fresh install)"
    else
        say "set up PostgreSQL role $user with the password from the URL (fresh install)"
    fi
}

PG_FRESH=0
declare -A PG_SERVER_OK=()
# ensure_pg_server : PostgreSQL reachable at PG_HOST:PG_PORT (install/start when local).
ensure_pg_server() {
    local key="$PG_HOST:$PG_PORT" rc=0
    [[ -n ${PG_SERVER_OK[$key]:-} ]] && return 0
    if ! have pg_isready || ! have psql; then
        is_local_host "$PG_HOST" \
            || die "the PostgreSQL client (psql, pg_isready) is missing; install it with: $(sudo_hint)apt-get install postgresql-client"
        if [[ -n $PG_HOST && $PG_HOST != /* ]] && tcp_open "$PG_HOST" "$PG_PORT"; then
            apt_install "the PostgreSQL client" postgresql-client       # server runs already (e.g. a container)
        else
            pg_server_installed || PG_FRESH=1
            apt_install "PostgreSQL" postgresql postgresql-contrib
        fi
    fi
    pg_ready || rc=$?
    if [[ $rc != 0 ]]; then
        is_local_host "$PG_HOST" \
            || die "PostgreSQL is not reachable at $PG_WHERE; start it there or fix DATABASE_URL/TEST_DATABASE_URL"
        if [[ $rc != 1 ]]; then          # 1 = starting up / rejecting: just wait
            if ! pg_server_installed; then
                apt_install "the PostgreSQL server" postgresql postgresql-contrib
                PG_FRESH=1
                pg_ready || start_pg_cluster "$PG_PORT"   # Debian's postinst may have started it
            else
                start_pg_cluster "$PG_PORT"
            fi
        fi
        wait_pg
    fi
    PG_SERVER_OK[$key]=1
}

# ensure_pg_db VAR URL : server up, PostGIS available, database exists with postgis.
# Appends "dbname" to PG_SUMMARY_DBS[host:port] and records versions.
declare -A PG_SUMMARY_DBS=() PG_SUMMARY_VER=()
PG_SUMMARY_ORDER=()
ensure_pg_db() {
    local var=$1 url=$2 info err ver vernum postgis dbexists major pkg ext key
    pg_use_url "$var" "$url"
    ensure_pg_server
    # One round trip: versions, PostGIS availability, database existence.
    local q
    q="SELECT current_setting('server_version'), current_setting('server_version_num'),
                    coalesce((SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'), ''),
                    EXISTS (SELECT 1 FROM pg_database WHERE datname = $(sql_lit "$PG_DB"))"
    if ! info=$(pg_psql postgres -tA -F '|' -c "$q" 2>/dev/null); then
        if [[ $PG_FRESH == 1 ]] && is_local_host "$PG_HOST" && can_root; then
            bootstrap_fresh_auth || die "could not set up login for ${PG_USER:-$(id -un)} on the freshly installed PostgreSQL at $PG_WHERE; run: sudo -u postgres psql -c \"ALTER ROLE postgres PASSWORD '...'\" and put that password in $var"
        fi
        info=$(pg_psql postgres -tA -F '|' -c "$q" 2>/dev/null) || {
            err=$(pg_psql postgres -tAc 'SELECT 1' 2>&1 >/dev/null || true)
            die "cannot log in to PostgreSQL at $PG_WHERE as ${PG_USER:-$(id -un)} (${err%%$'\n'*}); fix the user/password in $var or the server's pg_hba.conf"
        }
    fi
    IFS='|' read -r ver vernum postgis dbexists <<<"$info"
    ver=${ver%% *}
    major=$((vernum / 10000))
    pkg=postgresql-$major-postgis-3

    if [[ -z $postgis ]]; then
        if ! is_local_host "$PG_HOST" || ! can_root; then
            die "PostGIS is not available on $PG_WHERE; install it with: $(sudo_hint)apt-get install $pkg"
        fi
        apt_install "PostGIS" "$pkg"
        postgis=$(pg_psql postgres -tAc "SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'" 2>/dev/null) || true
        [[ -n $postgis ]] || die "PostGIS is still not available on $PG_WHERE after installing $pkg (is that server this machine's PostgreSQL $major?)"
    fi

    if [[ $dbexists != t ]]; then
        err=$(pg_psql postgres -c "CREATE DATABASE $(sql_ident "$PG_DB")" 2>&1) \
            || die "cannot create database $PG_DB on $PG_WHERE (${err%%$'\n'*}); create it with: createdb -h ${PG_HOST:-localhost} -p $PG_PORT -U <superuser> $PG_DB"
        say "created database $PG_DB on $PG_WHERE"
    fi

    ext=$(pg_psql "$PG_DB" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'postgis'" 2>/dev/null) || {
        err=$(pg_psql "$PG_DB" -tAc 'SELECT 1' 2>&1 >/dev/null || true)
        die "cannot connect to database $PG_DB on $PG_WHERE as ${PG_USER:-$(id -un)} (${err%%$'\n'*}); check the privileges of that user"
    }
    if [[ -z $ext ]]; then
        # A concurrent CREATE EXTENSION (another run, a migration) can win the
        # race and make ours fail on the unique catalog key: re-check before failing.
        err=$(pg_psql "$PG_DB" -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION IF NOT EXISTS postgis' 2>&1) \
            || [[ -n $(pg_psql "$PG_DB" -tAc "SELECT 1 FROM pg_extension WHERE extname = 'postgis'" 2>/dev/null) ]] \
            || die "cannot create the postgis extension in $PG_DB on $PG_WHERE (${err%%$'\n'*}); run as a superuser: psql -h ${PG_HOST:-localhost} -p $PG_PORT -d $PG_DB -c 'CREATE EXTENSION postgis'"
        ext=$(pg_psql "$PG_DB" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'postgis'" 2>/dev/null)
        say "created extension postgis $ext in $PG_DB"
    fi

    key="$PG_WHERE"
    if [[ -z ${PG_SUMMARY_VER[$key]:-} ]]; then
        PG_SUMMARY_ORDER+=("$key")
        PG_SUMMARY_VER[$key]="postgres $ver + postgis $ext"
        PG_SUMMARY_DBS[$key]=$PG_DB
    elif [[ ", ${PG_SUMMARY_DBS[$key]}, " != *", $PG_DB, "* ]]; then
        PG_SUMMARY_DBS[$key]+=", $PG_DB"
    fi
}

# ---------------------------------------------------------------- Redis
R_HOST='' R_PORT='' R_USER='' R_PASS='' R_TLS=() R_WHERE=''
redis_use_url() {
    parse_url "$REDIS_URL"
    case $U_SCHEME in
        redis) R_TLS=() ;;
        rediss) R_TLS=(--tls) ;;
        *) die "REDIS_URL must be a redis:// or rediss:// URL (got scheme '$U_SCHEME')" ;;
    esac
    R_HOST=${U_HOST:-127.0.0.1} R_PORT=${U_PORT:-6379} R_USER=$U_USER R_PASS=$U_PASS
    R_WHERE="$R_HOST:$R_PORT"
}

# redis_cmd CMD... : print the reply (like redis-cli), status 1 if nothing answered.
redis_cmd() {
    if have redis-cli; then
        local -a a=(-h "$R_HOST" -p "$R_PORT" "${R_TLS[@]}")
        [[ -n $R_USER && $R_USER != default ]] && a+=(--user "$R_USER")
        if [[ -n $R_PASS ]]; then
            REDISCLI_AUTH=$R_PASS timeout 5 redis-cli "${a[@]}" "$@" </dev/null 2>/dev/null
        else
            timeout 5 redis-cli "${a[@]}" "$@" </dev/null 2>/dev/null
        fi
    else
        # Plain RESP over bash /dev/tcp (inline commands); enough for PING and INFO.
        # shellcheck disable=SC2016  # expanded by the inner shell
        timeout 5 bash -c '
            exec 3<>"/dev/tcp/$1/$2" || exit 1
            user=$3 pass=$4; shift 4
            if [[ -n $pass ]]; then
                if [[ -n $user ]]; then printf "AUTH %s %s\r\n" "$user" "$pass" >&3; else printf "AUTH %s\r\n" "$pass" >&3; fi
                IFS= read -r -t 3 line <&3 || exit 1
            fi
            printf "%s\r\n" "$*" >&3
            IFS= read -r -t 3 line <&3 || exit 1
            line=${line%$'\''\r'\''}
            case $line in
                [+-]*) printf "%s\n" "${line:1}" ;;
                \$*) n=${line:1}; [[ $n -gt 0 ]] && { head -c "$n" <&3 | tr -d "\r"; echo; } ;;
                *) printf "%s\n" "$line" ;;
            esac' _ "$R_HOST" "$R_PORT" "$R_USER" "$R_PASS" "$@" 2>/dev/null
    fi
}
redis_ping() { [[ $(redis_cmd PING || true) == PONG ]]; }

start_redis() {
    local dir=/var/lib/redis logdir=/var/log/redis log before i try
    local fail_re='Could not create server TCP listening socket|Failed listening on port|Address already in use'
    local -a common
    if ! { mkdir -p "$dir" "$logdir" 2>/dev/null && [[ -w $dir && -w $logdir ]]; }; then
        dir=${TMPDIR:-/tmp}/fieldpool-redis-$(id -u); logdir=$dir   # non-root without access
        mkdir -p "$dir"
    fi
    log=$logdir/fieldpool.log
    common=(--daemonize yes --port "$R_PORT" --save "" --appendonly no --dir "$dir" --logfile "$log")
    [[ -n $R_PASS && ( -z $R_USER || $R_USER == default ) ]] && common+=(--requirepass "$R_PASS")
    for try in ipv6 ipv4; do
        local -a bind=(--bind 127.0.0.1 -::1)
        [[ $try == ipv4 ]] && bind=(--bind 127.0.0.1)
        before=$(stat -c %s "$log" 2>/dev/null || echo 0)
        [[ $try == ipv4 ]] && sleep 0.2      # let a failed first attempt exit
        if detached redis-server "${common[@]}" "${bind[@]}" </dev/null >/dev/null 2>&1; then
            for ((i = 0; i < 50; i++)); do
                if redis_ping; then
                    say "started redis-server on $R_WHERE (bind ${bind[*]:1}, log $log)"
                    return 0
                fi
                # Bind failure happens after daemonizing: look for it in the new part of the log.
                if [[ -f $log && $(tail -c +"$((before + 1))" "$log" 2>/dev/null) =~ $fail_re ]]; then
                    break
                fi
                sleep 0.1
            done
        fi
    done
    die "could not start redis-server on $R_WHERE (see $log); start it with: redis-server --daemonize yes --bind 127.0.0.1 --port $R_PORT --save \"\" --appendonly no"
}

ensure_redis() {
    local reply
    redis_use_url
    reply=$(redis_cmd PING || true)
    [[ $reply == PONG ]] && return 0
    [[ -n $reply ]] && die "Redis at $R_WHERE answered '$reply' to PING; fix the password in REDIS_URL"
    is_local_host "$R_HOST" || die "Redis is not reachable at $R_WHERE; start it there or fix REDIS_URL"
    if ! have redis-server; then
        apt_install "redis-server" redis-server
        # The package's init script may already have started one on the default port.
        redis_ping && { say "redis-server answers on $R_WHERE after install"; return 0; }
    fi
    start_redis
}

# ---------------------------------------------------------------- main
# Serialize concurrent runs (e.g. `make run` and `make test` at once) so they don't both try
# to install, start a server or create the same database. flock -o keeps the lock fd away
# from this script, so daemons started below (redis-server, postgres) don't inherit it.
LOCK=${TMPDIR:-/tmp}/fieldpool-ensure-services-$(id -u).lock
if [[ -z ${FIELDPOOL_ENSURE_SERVICES_LOCKED:-} ]] && have flock \
        && { [[ -w $LOCK ]] || { [[ ! -e $LOCK && -w ${LOCK%/*} ]]; }; }; then
    rc=0
    FIELDPOOL_ENSURE_SERVICES_LOCKED=1 flock -o -w 300 -E 75 "$LOCK" bash "${BASH_SOURCE[0]}" "$@" || rc=$?
    [[ $rc != 75 ]] || die "another ensure-services run has held $LOCK for 5 minutes; wait for it or remove the lock file"
    exit "$rc"
fi

ensure_pg_db DATABASE_URL "$DATABASE_URL"
ensure_pg_db TEST_DATABASE_URL "$TEST_DATABASE_URL"
ensure_redis

redis_ver=$(redis_cmd INFO server | sed -n 's/^redis_version:\([^[:space:]]*\).*/\1/p' || true)
summary=
for key in "${PG_SUMMARY_ORDER[@]}"; do
    summary+="${PG_SUMMARY_VER[$key]} at $key (${PG_SUMMARY_DBS[$key]}), "
done
say "${summary}redis ${redis_ver:-?} at $R_WHERE"
