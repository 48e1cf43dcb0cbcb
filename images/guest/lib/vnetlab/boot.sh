# Shared by both inits of the vnetlab initramfs (sourced, not run): /etc/init.d/rcS for the
# tiny guest, /sbin/vnl-root for guests whose root is a disk, and (copied onto the debian disk)
# the warm start of a disk guest. Everything comes from the kernel command line
# (vnetlab.backends.image.kernel_cmdline):
#   vnl.host=NAME  vnl.mgmt=MAC,ADDR/PREFIX  vnl.nics=MAC:NAME,MAC:NAME,...
# or, for the guest of a warm image (`vnl.warm` on the command line), from the identity the
# restored guest finds in its fw_cfg file (vnetlab.backends.warm_image), with the same words and
#   vnl.macs=WARM_MAC>MAC,...   (each NIC of the warm image and the MAC it takes)
# A step that fails prints exactly one line on ttyS0, "VNETLAB-FAILED host=NAME reason=...",
# so the host need not wait for a timeout.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
# The fw_cfg file qemu passes each guest: its keys (a cpio, booted guests) or its identity (a tar
# of a fixed size, restored guests).
secrets=/sys/firmware/qemu_fw_cfg/by_name/opt/vnetlab/secrets/raw
sys_net=${sys_net:-/sys/class/net}  # the NICs (another folder only in vnetlab's tests)
proc_net_tcp=${proc_net_tcp:-/proc/net/tcp}  # the TCP sockets (another file only in vnetlab's tests)

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
	[ -r "$secrets" ] || fail "no fw_cfg file opt/vnetlab/secrets (this guest's keys)"
	(cd / && cpio -i -d -m -u < "$secrets" 2>/dev/null) || fail "cannot unpack this guest's keys"
}

# The vnl.* words of the kernel command line, or of the file $1 (a restored guest's identity).
# No command is run for it (each fork and exec costs 10 ms or more under TCG, and much more in a
# restored guest, whose emulator translates again the code it runs).
read_command_line() {
	words=${1:-/proc/cmdline}
	read -r line < "$words" || [ -n "$line" ] || fail "cannot read $words"
	set -f
	for arg in $line; do
		case "$arg" in
			vnl.host=*) host=${arg#vnl.host=} ;;
			vnl.mgmt=*) mgmt=${arg#vnl.mgmt=} ;;
			vnl.nics=*) split_commas "${arg#vnl.nics=}"; nics=$list ;;
			vnl.macs=*) split_commas "${arg#vnl.macs=}"; macs=$list ;;
		esac
	done
	set +f
	[ -n "$host" ] || fail "no vnl.host= in $words"
	[ -n "$mgmt" ] || fail "no vnl.mgmt= in $words"
}

# $list: the comma-separated $1, separated by spaces (with set -f on: no word is a pattern).
split_commas() {
	saved_ifs=$IFS
	IFS=,
	set -- $1
	IFS=$saved_ifs
	list="$*"
}

warm_boot() {
	read -r line < /proc/cmdline
	case " $line " in *" vnl.warm "*) return 0 ;; esac
	return 1
}

# Set $nic to the interface that has MAC $1, waiting up to 5 s for it to appear (no fork: each
# costs ~10 ms under TCG).
find_nic() {
	tries=0
	while [ $tries -lt 100 ]; do
		for dev in "$sys_net"/*; do
			read -r address < "$dev/address"
			[ "$address" = "$1" ] && { nic=${dev##*/}; return 0; }
		done
		tries=$((tries + 1))
		sleep 0.05
	done
	return 1
}

# The guest of a warm image stops here, before anything makes it a particular guest: it says
# VNETLAB-WARM, vnetlab saves it, and each guest restored from the save finds its own identity in
# its fw_cfg file (all zeros for the warm guest: qemu takes the file from the restored domain's
# command line, Linux kept the size and selector it listed at boot). Then the guest's clock
# (the warm guest's is minutes or days old) is stepped from the RTC, and the restore's vmgenid
# notification must have reseeded the kernel's random number generator (else every guest
# restored from one image would draw the same numbers) before anything makes a key or a nonce.
await_identity() {
	modprobe qemu_fw_cfg || fail "cannot load qemu_fw_cfg"
	[ -r "$secrets" ] || fail "no fw_cfg file opt/vnetlab/secrets (this guest's identity)"
	echo "VNETLAB-WARM" > /dev/ttyS0
	until read -r -n 1 first < "$secrets" && [ -n "$first" ]; do
		sleep 0.02
	done
	tar -x -C / -f "$secrets" 2>/dev/null || fail "cannot unpack this guest's identity"
	read_command_line /etc/vnetlab/identity
	read -r now < /sys/class/rtc/rtc0/since_epoch && date -u -s "@$now" > /dev/null || fail "cannot set the clock from the RTC"
	tries=0
	until dmesg | grep -q 'crng reseeded due to virtual machine fork'; do
		tries=$((tries + 1))
		[ $tries -lt 100 ] || fail "the kernel did not reseed its random number generator after the restore (no vmgenid notification)"
		sleep 0.02
	done
}

# This guest's name: the kernel's (written to /proc, not by `hostname`: a fork and exec cost 0.1-0.3 s
# in a restored guest, whose emulator translates every program again), /etc/hostname and /etc/hosts.
become_host() {
	echo "$host" > /proc/sys/kernel/hostname || fail "cannot set the hostname"
	echo "$host" > /etc/hostname
	printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$host" > /etc/hosts
}

# Whether a socket listens on TCP port 22 (read from /proc/net/tcp by the shell itself: no fork).
sshd_listens() {
	while read -r _ local _ state _; do
		case "$local" in *:0016) [ "$state" = 0A ] && return 0 ;; esac
	done < "$proc_net_tcp"
	return 1
}

load_drivers() {
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
}

# NICs named by MAC (management NIC → mgmt0; data NICs stay down and unaddressed), mgmt0 addressed.
set_up_network() {
	load_drivers
	name_nics
}

# The NICs named by MAC, mgmt0 addressed and up; a restored guest's NICs first take their MACs
# from the warm image's (they are down: no frame ever left with a warm image's MAC). Renamed in
# two passes, so a wanted name that the kernel gave to another of our NICs (e.g. data NIC "eth0"
# while the management NIC is eth0) is free in pass two. The ip commands run one by one
# (busybox), or all in one run with $ip_batch set (iproute2's ip -batch: one exec).
name_nics() {
	wanted="${mgmt%%,*}:mgmt0 $nics"
	commands=""
	i=0
	for entry in $wanted; do
		mac=${entry%:*}
		from=$mac
		for pair in $macs; do
			[ "${pair#*>}" = "$mac" ] && from=${pair%>*}
		done
		find_nic "$from" || fail "no NIC with MAC $from"
		if [ "$from" = "$mac" ]; then
			commands="${commands}link set dev $nic name vnltmp$i
"
		else
			commands="${commands}link set dev $nic address $mac name vnltmp$i
"
		fi
		i=$((i + 1))
	done
	i=0
	for entry in $wanted; do
		commands="${commands}link set dev vnltmp$i name ${entry##*:}
"
		i=$((i + 1))
	done
	read -r lo_flags < "$sys_net/lo/flags" 2>/dev/null || lo_flags=0
	[ $((lo_flags & 1)) -eq 1 ] || commands="${commands}link set lo up
"  # up already in a restored guest: its warm guest brought it up before the save (IFF_UP)
	commands="${commands}addr add ${mgmt#*,} dev mgmt0
link set mgmt0 up"
	if [ -n "$ip_batch" ]; then
		printf '%s\n' "$commands" | ip -batch - || fail "cannot set up the NICs (ip -batch)"
		return
	fi
	set -f
	while read -r command; do
		[ -z "$command" ] || ip $command || fail "ip $command failed"
	done <<EOF
$commands
EOF
	set +f
}
