#!/bin/sh
# dockerd-entrypoint.sh: the testbed dind image's entrypoint, behaving like the official docker:dind image's so pod
# specs written for docker:dind (sidecar with args like `--host=unix:///var/run/docker.sock`) work unchanged.
#   - no args, or first arg starts with '-': run dockerd with those args.
#   - DOCKER_TLS_CERTDIR set (image default /certs): generate CA/server/client certs there if missing (the client
#     key made 0644 as soon as it exists, as docker:dind does, for non-root clients sharing /certs/client); when no
#     --host is given, listen on unix:///var/run/docker.sock and tcp://0.0.0.0:2376 with --tlsverify.
#   - DOCKER_TLS_CERTDIR empty or unset: no TLS; when no --host is given, listen on unix:///var/run/docker.sock only
#     (docker:dind would also open plain tcp 2375 after a 15 s deprecation delay; the testbed never wants that).
#   - dockerd is started through the `dind` script (cgroup/mount preparation), under docker-init (tini) when PID 1,
#     because dockerd 20.10 does not reap orphans.
#   - when the runc in PATH knows no time namespace (Debian bookworm's 1.1.5) and dockerd would use them (>= 29.5),
#     --feature time-namespaces=false is added (see below).
#   - anything else is exec'd as is (e.g. `docker info`, `sh`).
set -eu

log() { echo "dockerd-entrypoint: $*" >&2; }

tls_generate() {
	# $1 = cert dir. Keeps existing certs (a shared volume may already hold them, e.g. after a container restart).
	dir=$1
	if [ -s "$dir/server/cert.pem" ] && [ -s "$dir/server/key.pem" ] && [ -s "$dir/ca/cert.pem" ]; then
		return 0
	fi
	command -v openssl >/dev/null || {
		log "openssl missing, cannot generate TLS certs"
		return 1
	}
	log "generating TLS certificates in $dir"
	mkdir -p "$dir/ca" "$dir/server" "$dir/client"
	days=825 bits=${DOCKER_TLS_KEY_BITS:-4096}
	if [ ! -s "$dir/ca/key.pem" ]; then
		openssl genrsa -out "$dir/ca/key.pem" "$bits" 2>/dev/null
		openssl req -new -x509 -key "$dir/ca/key.pem" -out "$dir/ca/cert.pem" -days "$days" -subj '/CN=docker:dind CA'
	fi
	san="DNS:docker,DNS:localhost,DNS:$(hostname),IP:127.0.0.1,IP:::1"
	for ip in $(hostname -i 2>/dev/null || :); do san="$san,IP:$ip"; done
	if [ -n "${DOCKER_TLS_SAN:-}" ]; then san="$san,$DOCKER_TLS_SAN"; fi
	for role in server client; do
		ext=$(mktemp)
		if [ "$role" = server ]; then
			printf 'extendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san" >"$ext"
			cn=docker
		else
			printf 'extendedKeyUsage=clientAuth\n' >"$ext"
			cn="docker:dind client"
		fi
		openssl genrsa -out "$dir/$role/key.pem" "$bits" 2>/dev/null # openssl writes it 0600
		# As docker:dind, right after generating it: the client key is shared with clients of any uid (a non-root job
		# container reads it from the shared volume); the server key stays 0600.
		[ "$role" = server ] || chmod 0644 "$dir/$role/key.pem"
		openssl req -new -key "$dir/$role/key.pem" -out "$dir/$role/csr.pem" -subj "/CN=$cn"
		openssl x509 -req -in "$dir/$role/csr.pem" -CA "$dir/ca/cert.pem" -CAkey "$dir/ca/key.pem" \
			-CAcreateserial -out "$dir/$role/cert.pem" -days "$days" -extfile "$ext" 2>/dev/null
		rm -f "$ext" "$dir/$role/csr.pem"
		cp "$dir/ca/cert.pem" "$dir/$role/ca.pem"
		chmod 0644 "$dir/$role/cert.pem" "$dir/$role/ca.pem"
	done
}

# runc_has_time_ns: the runc dockerd will call supports time namespaces (runc >= 1.2 lists "time" in `runc features`).
runc_has_time_ns() {
	runc features 2>/dev/null | tr -d ' \t\n' | grep -q '"namespaces":\[[^]]*"time"'
}

# time_ns_decided ARGS...: the user already chose: a time-namespaces feature on the command line, or a "features" key
# in the daemon config file (a flag would then conflict with it: dockerd refuses to start).
time_ns_decided() {
	config=/etc/docker/daemon.json
	prev=""
	for a in "$@"; do
		case $a in
		*time-namespaces*) return 0 ;;
		--config-file=*) config=${a#--config-file=} ;;
		esac
		[ "$prev" = --config-file ] && config=$a
		prev=$a
	done
	[ -f "$config" ] && grep -q '"features"' "$config"
}

has_host_arg() {
	for a in "$@"; do
		case $a in
		-H | -H?* | --host | --host=*) return 0 ;;
		esac
	done
	return 1
}

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	if ! has_host_arg "$@"; then
		if [ -n "${DOCKER_TLS_CERTDIR:-}" ] && tls_generate "$DOCKER_TLS_CERTDIR"; then
			d=$DOCKER_TLS_CERTDIR/server
			set -- --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 --tlsverify \
				--tlscacert "$d/ca.pem" --tlscert "$d/cert.pem" --tlskey "$d/key.pem" "$@"
		else
			set -- --host=unix:///var/run/docker.sock "$@"
		fi
	elif [ -n "${DOCKER_TLS_CERTDIR:-}" ]; then
		# The user chose the listeners; still provide certs for any tcp listener they asked for.
		tls_generate "$DOCKER_TLS_CERTDIR" || :
	fi
	set -- dockerd "$@"
fi

if [ "$1" = dockerd ]; then
	if [ "$(id -u)" != 0 ]; then
		log "this image runs rootful dockerd only (uid $(id -u) given); use a privileged container as root"
		exit 1
	fi
	# A stale pid file from an unclean stop makes dockerd refuse to start.
	find /run /var/run -maxdepth 1 -iname 'docker*.pid' -delete 2>/dev/null || :

	# iptables backend: Debian defaults to nf_tables. Use legacy when asked (DOCKER_IPTABLES_LEGACY, as docker:dind)
	# or when nf_tables does not work but legacy does (hosts without nf_tables support).
	legacy=/usr/local/sbin/.iptables-legacy
	if [ -n "${DOCKER_IPTABLES_LEGACY:-}" ]; then
		export PATH="$legacy:$PATH"
	elif ! iptables -nL >/dev/null 2>&1 && iptables-legacy -nL >/dev/null 2>&1; then
		log "iptables (nf_tables) unusable, falling back to iptables-legacy"
		export PATH="$legacy:$PATH"
	fi

	# Time namespaces: dockerd >= 29.5 gives every container one whenever the kernel supports them, without asking the
	# runtime; runc before 1.2 does not know that namespace, and every container then fails to start with
	# 'runc create failed: namespace {"time" ""} does not exist'. dockerd's own escape hatch turns them off (its
	# containers then share the pod's time namespace, as with Docker <= 29.4). Older dockerd have no --feature flag.
	if ! runc_has_time_ns && ! time_ns_decided "$@" && dockerd --help 2>/dev/null | grep -q -- '--feature'; then
		log "runc without time namespace support ($(runc --version 2>/dev/null | head -n 1)): adding --feature time-namespaces=false"
		set -- "$@" --feature time-namespaces=false
	fi

	set -- "$(command -v dind)" "$@"
	if [ "$$" = 1 ] && command -v docker-init >/dev/null; then
		set -- docker-init -- "$@"
	fi
fi

exec "$@"
