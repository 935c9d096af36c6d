#!/bin/sh
# Installs ptrace-lang from this checkout into an environment of its own and puts the `ptrace`
# command on PATH. It works the same with a distribution's Python that refuses `pip install`
# outside a virtual environment (PEP 668: Debian 12, Ubuntu 23.04+, Fedora 38+) and with one
# that allows it (pyenv, a virtual environment, a container): it never installs into the
# interpreter's own site-packages.
#
#   ./install.sh            the command:   a venv in PREFIX, `ptrace` linked into BINDIR
#   ./install.sh --tests    the same, plus what the test suite needs: pytest, llvmlite (the second
#                           backend), and the system packages that give it full coverage
#                           (see README, "Tests")
#
# As root (tracing needs root): PREFIX=/opt/ptrace-lang, BINDIR=/usr/local/bin (on root's PATH
# and on sudo's secure_path). As another user: ~/.local/share/ptrace-lang and ~/.local/bin.
# Override with PTRACE_PREFIX, PTRACE_BINDIR; the interpreter with PTRACE_PYTHON (default
# python3, 3.10 or newer). Running it again upgrades the installed copy in place.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tests=0
for arg in "$@"; do
	case $arg in
	--tests) tests=1 ;;
	-h | --help)
		sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install.sh: unknown argument '$arg' (try --help)" >&2
		exit 2
		;;
	esac
done

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

if [ "$(id -u)" -eq 0 ]; then
	prefix=${PTRACE_PREFIX:-/opt/ptrace-lang}
	bindir=${PTRACE_BINDIR:-/usr/local/bin}
else
	prefix=${PTRACE_PREFIX:-${XDG_DATA_HOME:-$HOME/.local/share}/ptrace-lang}
	bindir=${PTRACE_BINDIR:-$HOME/.local/bin}
fi
python=${PTRACE_PYTHON:-python3}

command -v "$python" >/dev/null 2>&1 || die "no '$python' found: install Python 3.10 or newer (Debian/Ubuntu: apt-get install python3)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
	die "$("$python" --version 2>&1) is too old: ptrace-lang needs Python 3.10 or newer (set PTRACE_PYTHON)"

apt_install() {
	# Debian and Ubuntu: install packages when root, otherwise say which are missing
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		return 1
	fi
	say "installing system packages: $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 || {
		DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
	}
}

# a distribution's Python may come without venv and ensurepip (Debian/Ubuntu: python3-venv)
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
	pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
	apt_install python3-venv "python$pyver-venv" || apt_install python3-venv ||
		die "this Python has no venv/ensurepip module: install it (Debian/Ubuntu: apt-get install python3-venv) and run ./install.sh again"
fi

if ! "$prefix/bin/python" -c '' >/dev/null 2>&1; then
	say "creating the environment $prefix"
	"$python" -m venv --clear "$prefix" || die "could not create a virtual environment in $prefix"
fi

# pip builds in the source tree (build/, *.egg-info): build from a copy, so that a checkout owned
# by a user who ran `sudo ./install.sh` gets no root-owned files, and no stale build/ is reused
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar -C "$here" --exclude=./.git --exclude=./build --exclude='*.egg-info' --exclude=__pycache__ \
	-cf - . | tar -C "$src" -xf -
spec="$src"
[ "$tests" -eq 1 ] && spec="$src[test,llvm]"
say "installing ptrace-lang into $prefix"
"$prefix/bin/python" -m pip install -q --disable-pip-version-check "$spec" ||
	die "pip could not install ptrace-lang into $prefix"

mkdir -p "$bindir"
ln -sf "$prefix/bin/ptrace" "$bindir/ptrace"
case ":$PATH:" in
*":$bindir:"*) ;;
*) say "note: $bindir is not on your PATH; run $bindir/ptrace, or add it to PATH" ;;
esac

if [ "$tests" -eq 1 ]; then
	# full coverage: USDT tests build probes with <sys/sdt.h>; comparisons run bpftrace 0.17 side by
	# side; the exporter's test scrapes with a real Prometheus server, the flame graph's opens the
	# SVG in headless Chromium. Without them those tests skip, each saying why.
	missing=""
	command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
	command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
	printf "#include <sys/sdt.h>\\n" | cc -E - >/dev/null 2>&1 || missing="$missing systemtap-sdt-dev"
	command -v bpftrace >/dev/null 2>&1 || missing="$missing bpftrace"
	command -v cc >/dev/null 2>&1 || missing="$missing gcc libc6-dev"
	if [ -n "$missing" ]; then
		# shellcheck disable=SC2086
		apt_install $missing || say "for full test coverage install:$missing (their tests skip without them, saying why)"
	fi
	say "the tests: $prefix/bin/python -m pytest -q -rs tests (from $here)"
fi
say "done: $("$bindir/ptrace" --version)"
