# Shared by both inits of the vnetlab initramfs (sourced, not run): /etc/init.d/rcS for the
# tiny guest, /sbin/vnl-root for guests whose root is a disk. Everything comes from the kernel
# command line (vnetlab.backends.image.kernel_cmdline):
#   vnl.host=NAME  vnl.mgmt=MAC,ADDR/PREFIX  vnl.nics=MAC:NAME,MAC:NAME,...
# A step that fails prints exactly one line on ttyS0, "VNETLAB-FAILED host=NAME reason=...",
# so the host need not wait for a timeout.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin

fail() {
	echo "VNETLAB-FAILED host=${host:-?} reason=$*" > /dev/ttyS0
	exit 1
}

mount_kernel_filesystems() {
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	mkdir -p /dev/pts
	mount -t devpts devpts /dev/pts
}

# This guest's own files (its SSH host key, the lab's authorized key): a cpio archive that qemu
# passes as the fw_cfg file opt/vnetlab/secrets, so that every guest boots the same initramfs.
unpack_secrets() {
	modprobe qemu_fw_cfg || fail "cannot load qemu_fw_cfg"
	secrets=/sys/firmware/qemu_fw_cfg/by_name/opt/vnetlab/secrets/raw
	[ -r "$secrets" ] || fail "no fw_cfg file opt/vnetlab/secrets (this guest's keys)"
	(cd / && cpio -i -d -m -u < "$secrets" 2>/dev/null) || fail "cannot unpack this guest's keys"
}

read_command_line() {
	set -f
	for arg in $(cat /proc/cmdline); do
		case "$arg" in
			vnl.host=*) host=${arg#vnl.host=} ;;
			vnl.mgmt=*) mgmt=${arg#vnl.mgmt=} ;;
			vnl.nics=*) nics=$(echo "${arg#vnl.nics=}" | tr , ' ') ;;
		esac
	done
	set +f
	[ -n "$host" ] || fail "no vnl.host= on the kernel command line"
	[ -n "$mgmt" ] || fail "no vnl.mgmt= on the kernel command line"
}

# Print the interface that has MAC $1, waiting up to 5 s for it to appear.
iface_by_mac() {
	tries=0
	while [ $tries -lt 100 ]; do
		for dev in /sys/class/net/*; do
			[ "$(cat "$dev/address")" = "$1" ] && { echo "${dev##*/}"; return 0; }
		done
		tries=$((tries + 1))
		sleep 0.05
	done
	return 1
}

# NICs named by MAC (management NIC → mgmt0; data NICs stay down and unaddressed), mgmt0 addressed.
set_up_network() {
	modprobe virtio_pci || fail "cannot load virtio_pci"
	# Free page reporting (the domain's virtio balloon): the guest hands its free pages back to
	# the host. Linux 6.1's driver sets the reporting order to 9 (free blocks of 2 MiB and more)
	# when it registers; order 0 also returns the freed initrd and init memory, which lie in
	# smaller pieces. First, so the reporting (2 s after the first free) overlaps the boot. Without a balloon device the module loads and reports nothing.
	if modprobe virtio_balloon && [ -w /sys/module/page_reporting/parameters/page_reporting_order ]; then
		echo 0 > /sys/module/page_reporting/parameters/page_reporting_order
	fi
	modprobe virtio_net || fail "cannot load virtio_net"
	# Entropy from the host (virtio-rng): without it the CRNG is ready only ~4 s after boot
	# under TCG, and the first getrandom() of sshd blocks until then.
	modprobe virtio_rng || fail "cannot load virtio_rng"

	# Rename by MAC in two passes, so a wanted name that the kernel gave to another of
	# our NICs (e.g. data NIC "eth0" while the management NIC is eth0) is free in pass two.
	wanted="${mgmt%%,*}:mgmt0 $nics"
	i=0
	for entry in $wanted; do
		dev=$(iface_by_mac "${entry%:*}") || fail "no NIC with MAC ${entry%:*}"
		ip link set dev "$dev" name "vnltmp$i" || fail "cannot rename $dev"
		i=$((i + 1))
	done
	i=0
	for entry in $wanted; do
		ip link set dev "vnltmp$i" name "${entry##*:}" || fail "cannot name a NIC ${entry##*:}"
		i=$((i + 1))
	done

	ip link set lo up
	ip addr add "${mgmt#*,}" dev mgmt0 || fail "cannot add ${mgmt#*,} to mgmt0"
	ip link set mgmt0 up || fail "cannot bring mgmt0 up"
}
