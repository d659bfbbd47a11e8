# Shared by scripts/test and scripts/demo (sourced, not run): make sure a service answers.
#
#   das_service_up postgres|mariadb|redis
#
# Addresses come from the same variables as tests/settings.py (DAS_PG_HOST, DAS_PG_PORT,
# DAS_PG_USER, DAS_MYSQL_HOST, DAS_MYSQL_PORT, DAS_MYSQL_USER, DAS_MYSQL_PASSWORD,
# DAS_REDIS_URL). A local service that does not answer is started with this machine's
# start command, then waited for; one that still does not answer is an error.

das_tcp_open() {  # host port
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

das_redis_url() { printf '%s' "${DAS_REDIS_URL:-redis://127.0.0.1:6379/0}"; }

das_redis_port() {
    local rest=${1#*://}
    rest=${rest##*@}
    rest=${rest%%/*}
    [[ $rest == *:* ]] && printf '%s' "${rest##*:}" || printf '6379'
}

das_redis_host() {
    local rest=${1#*://}
    rest=${rest##*@}
    rest=${rest%%/*}
    printf '%s' "${rest%:*}"
}

das_service_address() {
    case $1 in
        postgres) printf '%s:%s' "${DAS_PG_HOST:-127.0.0.1}" "${DAS_PG_PORT:-5432}" ;;
        mariadb) printf '%s:%s' "${DAS_MYSQL_HOST:-127.0.0.1}" "${DAS_MYSQL_PORT:-3306}" ;;
        redis) printf '%s:%s' "$(das_redis_host "$(das_redis_url)")" "$(das_redis_port "$(das_redis_url)")" ;;
    esac
}

das_service_answers() {
    local address host port
    address=$(das_service_address "$1")
    host=${address%:*} port=${address##*:}
    case $1 in
        postgres)
            if command -v pg_isready >/dev/null; then
                pg_isready -q -h "$host" -p "$port" -U "${DAS_PG_USER:-postgres}" -t 3
            else
                das_tcp_open "$host" "$port"
            fi
            ;;
        mariadb)
            if command -v mariadb-admin >/dev/null; then
                MYSQL_PWD=${DAS_MYSQL_PASSWORD:-} mariadb-admin --protocol=TCP -h "$host" -P "$port" \
                    -u "${DAS_MYSQL_USER:-root}" --connect-timeout=3 ping >/dev/null 2>&1
            else
                das_tcp_open "$host" "$port"
            fi
            ;;
        redis)
            if command -v redis-cli >/dev/null; then
                [[ $(timeout 5 redis-cli -u "$(das_redis_url)" --no-auth-warning ping 2>/dev/null) == PONG ]]
            else
                das_tcp_open "$host" "$port"
            fi
            ;;
    esac
}

das_service_start() {
    local port
    case $1 in
        postgres)
            pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
            ;;
        mariadb)
            start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
            ;;
        redis)
            port=$(das_redis_port "$(das_redis_url)")
            mkdir -p /var/lib/redis /var/log/redis
            redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" --save "" \
                --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
            ;;
    esac
}

das_service_up() {
    local service=$1 address host attempt
    das_service_answers "$service" && return 0
    address=$(das_service_address "$service")
    host=${address%:*}
    case $host in
        127.0.0.1 | localhost | ::1 | "[::1]") ;;
        *) das_die "$service at $address does not answer (not local, so not started here)" ;;
    esac
    [[ $(id -u) == 0 ]] || das_die "$service at $address does not answer; start it (needs root)"
    das_say "$service at $address does not answer: starting it"
    das_service_start "$service" >&2 || true
    for attempt in $(seq 60); do
        das_service_answers "$service" && return 0
        sleep 0.5
    done
    das_die "$service at $address still does not answer after starting it; see its log"
}
