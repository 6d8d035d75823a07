# vmqos: the two set-up commands of the quick start.
#   make demo   install everything, then run the demo
#   make test   install everything, then run the whole test suite
# Both are idempotent: a second run installs nothing new.

PYTHON   ?= python3
VENV     := .venv
OSC      := .venv-osc
VPY      := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
APT_STAMP := /var/lib/vmqos-apt.stamp
# Debian packages the project uses: iproute2 (tc, ip), nftables (nft) and iperf3 for the
# kernel and traffic tiers, hping3 for the SYN flood of the flood-response test, tcpdump to see
# DSCP marks on the wire, ping for latency under load,
# procps for the demo's checks; util-linux (losetup) for the disk tier's loop devices.
# libvirt and QEMU for real VMs (`vmqos vm`, the libvirt tier): libvirt-dev and pkg-config let pip
# build libvirt-python against Debian's libvirt (Debian's python3-libvirt only works with
# /usr/bin/python3); linux-image-amd64, busybox-static and cpio give the tests a tiny guest that
# boots under TCG in seconds (KVM here is nested and too slow, kernel-lab-facts.md §6).
# postgresql (15 on Debian 12): the suite runs the store and the server on a throw-away cluster
# (initdb in a temp dir, tests/pgcluster.py); its service is not used and need not run.
# openssl: the server's TLS test makes a throw-away CA and certificate with it. systemd (its
# systemd-analyze) and libseccomp2: the tests verify contrib/systemd's units and run the server and
# the agent's work under their system-call filters (tests/unit_sandbox.py); systemd need not run.
# chromium: the dashboard's browser tier (tests/browser) drives Debian's headless Chromium with the
# playwright package (never a browser playwright downloads). Node.js's npm (>= 7, for lockfile v3; not
# a Debian 12 package on our machines, which carry NodeSource's nodejs) installs the dashboard's browser
# libraries (uPlot) from the npm registry, pinned in web-build/package-lock.json (`make web`).
# containernetworking-plugins (1.1.1: CNI spec up to 1.0.0, in /usr/lib/cni): the reference bridge,
# host-local and bandwidth plugins that tests/kernel/test_cni.py and tests/traffic/test_cni_*.py chain
# vmqos-cni with; podman (4.3, its CNI back end) and runc (crun refuses these hosts' hybrid cgroups) run a
# real container on such a network (tests/traffic/test_cni_podman.py); nsenter is util-linux's.
APT_PACKAGES := iproute2 nftables iperf3 hping3 tcpdump iputils-ping procps util-linux \
	qemu-system-x86 libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc \
	linux-image-amd64 busybox-static cpio postgresql openssl systemd libseccomp2 \
	containernetworking-plugins podman runc chromium

WEB_VENDOR := src/vmqos/web/vendor
WEB_STAMP  := $(WEB_VENDOR)/.installed

.PHONY: demo test test-core deps apt venv web clean

demo: deps
	KEEP=$(KEEP) $(VENV)/bin/vmqos demo

# The suite in two phases, both always run. First the tiers that measure no rate - core, server and
# kernel (no traffic; every kernel test makes its own uniquely named namespaces) - on every core with
# pytest-xdist, a test file per worker so that a module's server or lab starts once. Then the tiers
# that measure rates - traffic, virt, browser, containers and the kernel's `rates` tests - one test at
# a time, on a machine they have to themselves.
# One pytest run for the second phase: every test outside core, server and kernel, plus the kernel tier's
# `rates` tests (kernel_tier is set by path, tests/conftest.py).
# Before both: the package's bytecode, compiled once. Where PYTHONDONTWRITEBYTECODE is set (our CI
# sessions set it; the main checkout held .pyc files for 63 of its ~290 modules, none of vmqos.api's) no
# process writes it, so each of the suite's Python processes compiled from source the vmqos modules it
# imports: up to 0.25 s of CPU per `vmqos server` start (its 135 modules), 0.1 s per `vmqos port --server`
# call (56), in every pytest worker too (measured 2026-12-07); ~30 server starts in phase 1 alone.
# Python reads .pyc files whatever that variable says, and recompiles a stale one (an edited source).
test: deps
	@$(VPY) -m compileall -q src >/dev/null
	@rc=0; \
	$(VPY) -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=30 -m "not rates" tests/core tests/server tests/kernel || rc=$$?; \
	$(VPY) -m pytest --durations=30 --ignore=tests/core --ignore=tests/server -m "rates or not kernel_tier" || rc=$$?; \
	exit $$rc

test-core: deps
	$(VPY) -m pytest tests/core

deps: apt venv web

# The dashboard's browser libraries: `npm ci` from the committed lock file (exact versions, checked by
# their integrity hashes), then their dist files copied into the package (git-ignored), so that the
# server serves them itself and the page needs no internet access.
web: $(WEB_STAMP)
$(WEB_STAMP): web-build/package.json web-build/package-lock.json | apt
	@command -v npm >/dev/null || { echo "make web needs Node.js's npm (>= 7): install Node.js"; exit 1; }
	cd web-build && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	mkdir -p $(WEB_VENDOR)
	cp web-build/node_modules/uplot/dist/uPlot.iife.min.js web-build/node_modules/uplot/dist/uPlot.min.css \
	  $(WEB_VENDOR)/
	cp web-build/node_modules/uplot/LICENSE $(WEB_VENDOR)/uPlot.LICENSE
	@touch $@

apt: $(APT_STAMP)
$(APT_STAMP): Makefile
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p $(dir $(APT_STAMP)) && touch $(APT_STAMP)

venv: $(STAMP)
$(STAMP): pyproject.toml src/vmqos/drivers/_nlstats.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "vmqos needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test,libvirt]'
	@# the real openstack CLI, which tests/server drives as operators do; in a virtualenv of its
	@# own, since its many dependencies must not move the project's pins
	test -x $(OSC)/bin/python || $(PYTHON) -m venv $(OSC)
	$(OSC)/bin/pip install -q --disable-pip-version-check python-openstackclient==10.5.0
	@touch $(STAMP)

clean:
	rm -rf $(VENV) $(OSC) build src/*.egg-info .pytest_cache .hypothesis web-build/node_modules $(WEB_VENDOR)
