# Entry points for a fresh Debian 12 or 13 host, as root. Every target is safe to run again.
VNETLAB := .venv/bin/vnetlab
PYTEST  := .venv/bin/python -m pytest

.PHONY: setup image demo test test-cold test-fast mutation docs wheel bench soak clean-labs prove-debian13

setup:
	./scripts/setup-host

image: setup
	$(VNETLAB) image build

## make demo: set up the host, build the guest image, run the two-vm-ping lab end to end
demo: image
	$(VNETLAB) run two-vm-ping

## make test: set up the host, build the guest image, run the whole suite (unit, golden, root, end to end)
test: image
	$(PYTEST) -ra

## make test-cold: the same suite with every guest booted (VNETLAB_COLD=1: warm start off; the tests about restored guests are skipped, saying why)
test-cold: image
	VNETLAB_COLD=1 $(PYTEST) -ra

## make test-fast: only the tests that need neither root nor VMs
test-fast: setup
	$(PYTEST) -ra -m "not e2e and not root"

## make mutation: mutmut over vnetlab/checks/ and the features' judges, each mutant against the unit tests that reach it; fails under 90 % killed (not in `make test`: ~18 min on 2 cores, 97.4 % of 4854 mutants measured)
mutation: setup
	./scripts/mutation

## make docs: the documentation site, built strictly into site/ (lesson, syntax and CLI pages generated)
docs: setup
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict

## make wheel: the wheel and sdist into dist/ (templates, scenarios, image recipe and schema inside)
wheel: setup
	.venv/bin/python -m build --no-isolation --outdir dist .

## make bench [VMS=N]: raw qemu boot vs `vnetlab run two-vm-ping`, warm start and --cold (ratios); a debian guest's boot to SSH vs a raw boot of its disk to the login prompt, and debian-two-vm-ping warm and cold; two guests of a cloud image up, warm and cold; N guests (default 10) vs N raw boots together, warm and cold, with memory; boot admission (K at a time vs all at once); the QMP commands libvirt sends per domain start (its debug log turned on for one run, then put back)
VMS ?= 10
bench: image
	.venv/bin/python bench/boot_vs_run.py
	.venv/bin/python bench/debian_boot.py
	.venv/bin/python bench/cloud_lab.py
	.venv/bin/python bench/scale.py --vms $(VMS)
	.venv/bin/python bench/admission.py --vms $(VMS)
	.venv/bin/python bench/qmp_per_start.py --rounds 1
	.venv/bin/python bench/table.py

## make soak: 20 consecutive `vnetlab run two-vm-ping`, then 3 at once; fails if anything of them remains
soak: image
	.venv/bin/python bench/soak.py

## make prove-debian13: in a Debian 13 (trixie) tree of its own (private mount and cgroup namespaces), install vnetlab, build the images, start trixie's own libvirtd and virtlogd, run two-vm-ping, debian-two-vm-ping, container-bridge-nat and web-service on its libvirt 11 and QEMU 10 (PASS/FAIL with each lab's time), the two-vm-ping benchmark and the QMP count (the Debian 13 rows of the benchmark table); nothing of it left behind, also after Ctrl-C
prove-debian13:
	./scripts/prove-debian13

clean-labs: setup
	$(VNETLAB) down --all
