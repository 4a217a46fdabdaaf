// The seccomp profile gVisor applies to a sandbox's own processes (runsc --oci-seccomp). Under runc the engine's
// default profile filters them in the host kernel; under gVisor that profile is not loaded by default, and this
// gVisor lets an unprivileged process create user and mount namespaces and chroot inside the sandbox (contained
// by gVisor, but against "no capabilities, no namespaces"). A deny-list, because this gVisor answers the engine's
// profile's `clone3` rule with EPERM, which stops glibc from starting threads; here clone3 stays allowed (gVisor
// answers it ENOSYS by itself, so glibc falls back to clone, whose namespace flags are filtered).
const EPERM = 1;

/** Syscalls a session never needs: namespaces, mounts, kernel modules and keys, clocks, host administration. */
const DENIED = [
  "unshare",
  "setns",
  "mount",
  "umount2",
  "pivot_root",
  "chroot",
  "fsopen",
  "fsmount",
  "fsconfig",
  "fspick",
  "move_mount",
  "open_tree",
  "mount_setattr",
  "keyctl",
  "add_key",
  "request_key",
  "bpf",
  "perf_event_open",
  "userfaultfd",
  "kexec_load",
  "kexec_file_load",
  "init_module",
  "finit_module",
  "delete_module",
  "swapon",
  "swapoff",
  "reboot",
  "open_by_handle_at",
  "name_to_handle_at",
  "acct",
  "quotactl",
  "lookup_dcookie",
  "syslog",
  "vhangup",
  "iopl",
  "ioperm",
  "settimeofday",
  "clock_settime",
  "adjtimex",
  "clock_adjtime",
  "sethostname",
  "setdomainname",
  "nfsservctl",
  "uselib",
  "ustat",
  "sysfs",
  "_sysctl",
  "get_kernel_syms",
  "query_module",
  "create_module",
  "vm86",
  "vm86old",
];

/** clone flags that make a namespace: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET. */
const NAMESPACE_FLAGS = [0x20000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

/** The OCI seccomp profile, as the engine's `--security-opt seccomp=<json>` takes it. */
export const GVISOR_GUEST_SECCOMP = JSON.stringify({
  defaultAction: "SCMP_ACT_ALLOW",
  architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  syscalls: [
    { names: DENIED, action: "SCMP_ACT_ERRNO", errnoRet: EPERM },
    ...NAMESPACE_FLAGS.map((flag) => ({
      names: ["clone"],
      action: "SCMP_ACT_ERRNO",
      errnoRet: EPERM,
      args: [{ index: 0, value: flag, valueTwo: flag, op: "SCMP_CMP_MASKED_EQ" }],
    })),
  ],
});
