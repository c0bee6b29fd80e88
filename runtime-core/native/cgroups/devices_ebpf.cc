// Device access rules on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the
// container's cgroup, generated from linux.resources.devices as runc's devicefilter does: the
// rules are checked last to first and the first match (i.e. the last matching rule) decides;
// nothing matching means deny. On hybrid hosts the program attached to the unified hierarchy is
// enforced in addition to the v1 devices controller, so this path runs (and is tested) here too.
#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "cgroups/backend.h"
#include "common/error.h"
#include "common/fd.h"

namespace conductor::cgroup_backend {

namespace {

bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst;
  i.src_reg = src;
  i.off = off;
  i.imm = imm;
  return i;
}

// Registers: R1 = ctx; R2 = device type; R3 = requested access; R4 = major; R5 = minor.
std::vector<bpf_insn> program(const std::vector<CgroupResources::Device>& rules) {
  std::vector<bpf_insn> p;
  p.push_back(insn(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0));  // access_type
  p.push_back(insn(BPF_ALU | BPF_AND | BPF_K, 2, 0, 0, 0xffff));
  p.push_back(insn(BPF_LDX | BPF_MEM | BPF_W, 3, 1, 0, 0));
  p.push_back(insn(BPF_ALU | BPF_RSH | BPF_K, 3, 0, 0, 16));
  p.push_back(insn(BPF_LDX | BPF_MEM | BPF_W, 4, 1, 4, 0));  // major
  p.push_back(insn(BPF_LDX | BPF_MEM | BPF_W, 5, 1, 8, 0));  // minor
  for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
    const auto& r = *it;
    std::vector<bpf_insn> block;
    // Each check jumps to the end of this block ("next rule") on mismatch; offsets are patched
    // once the block's length is known (marked with off = -1).
    if (r.type == 'c' || r.type == 'b') {
      int t = r.type == 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK;
      block.push_back(insn(BPF_JMP | BPF_JNE | BPF_K, 2, 0, -1, t));
    }
    int acc = 0;
    for (char c : r.access) {
      if (c == 'r') acc |= BPF_DEVCG_ACC_READ;
      if (c == 'w') acc |= BPF_DEVCG_ACC_WRITE;
      if (c == 'm') acc |= BPF_DEVCG_ACC_MKNOD;
    }
    if (acc != (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD)) {
      // Mismatch when the request asks for anything outside the rule's access.
      block.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_X, 6, 3, 0, 0));
      block.push_back(insn(BPF_ALU | BPF_AND | BPF_K, 6, 0, 0, ~acc));
      block.push_back(insn(BPF_JMP | BPF_JNE | BPF_K, 6, 0, -1, 0));
    }
    if (r.type != 'a' && r.major >= 0)
      block.push_back(insn(BPF_JMP | BPF_JNE | BPF_K, 4, 0, -1, static_cast<int32_t>(r.major)));
    if (r.type != 'a' && r.minor >= 0)
      block.push_back(insn(BPF_JMP | BPF_JNE | BPF_K, 5, 0, -1, static_cast<int32_t>(r.minor)));
    block.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, r.allow ? 1 : 0));
    block.push_back(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    bool conditional = false;
    for (size_t i = 0; i < block.size(); ++i) {
      if (block[i].off == -1) {
        block[i].off = static_cast<int16_t>(block.size() - i - 1);
        conditional = true;
      }
    }
    p.insert(p.end(), block.begin(), block.end());
    // A rule that matches everything decides every request: the verifier rejects the
    // unreachable code after it, and there is nothing left to check.
    if (!conditional) return p;
  }
  p.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0));  // default: deny
  p.push_back(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  return p;
}

long bpf(int cmd, bpf_attr* attr) { return ::syscall(__NR_bpf, cmd, attr, sizeof *attr); }

}  // namespace

void apply_v2_devices(const std::string& dir, const std::vector<CgroupResources::Device>& rules) {
  auto prog = program(rules);
  char log[4096] = {0};
  static const char license[] = "Apache-2.0";
  bpf_attr load{};
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = reinterpret_cast<uint64_t>(prog.data());
  load.insn_cnt = static_cast<uint32_t>(prog.size());
  load.license = reinterpret_cast<uint64_t>(license);
  load.log_buf = reinterpret_cast<uint64_t>(log);
  load.log_size = sizeof log;
  load.log_level = 1;
  UniqueFd prog_fd(static_cast<int>(bpf(BPF_PROG_LOAD, &load)));
  if (!prog_fd) {
    int e = errno;
    throw Error("linux.resources.devices: load the cgroup device eBPF program (" +
                    std::string(log[0] ? log : "no verifier log") + ")",
                e);
  }
  UniqueFd cg(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cg) throw_errno("open cgroup `" + dir + "`");
  bpf_attr attach{};
  attach.target_fd = static_cast<uint32_t>(cg.get());
  attach.attach_bpf_fd = static_cast<uint32_t>(prog_fd.get());
  attach.attach_type = BPF_CGROUP_DEVICE;
  attach.attach_flags = BPF_F_ALLOW_MULTI;
  if (bpf(BPF_PROG_ATTACH, &attach) < 0)
    throw_errno("linux.resources.devices: attach the device eBPF program to `" + dir + "`");
}

}  // namespace conductor::cgroup_backend
