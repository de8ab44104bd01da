// The bridge-network part of the Linux port: CNI's standard plugins run as the CNI
// specification (1.0.0) has a runtime run them. An attachment is two networks:
//   petrel-lo  loopback                       (interface lo)
//   petrel     bridge + host-local, portmap (with ports published)   (interface eth0),
//              chained: each plugin after the first gets the result before it as
//              prevResult.
// The rules every container of the bridge needs are the host's, one set for them all,
// added with the first attachment and left in place (as Docker leaves its own): the
// bridge's traffic through FORWARD, whose policy may be DROP, and its masquerade.
// The per-container rules of the bridge plugin's ipMasq and the firewall plugin did the
// same at about 150 ms a plugin per container (4 iptables runs each).
// Before the first plugin runs, a record of the attachment (the namespace, the ports,
// and later the chain's result) goes to <cni_state_dir>/<id>.json: a crash part-way
// through leaves what DetachNetwork needs to undo it. DEL runs the chain backwards, as
// libcni does, and tolerates what is already gone (the plugins' DEL is idempotent).
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <string>
#include <vector>

#include "lib/util/fs.h"
#include "lib/util/json.h"
#include "lib/util/process.h"
#include "lib/util/strings.h"
#include "ports/linux/linux_port.h"

namespace petrel::internal {
namespace {

using nlohmann::json;

constexpr char kCniVersion[] = "1.0.0";
constexpr char kNetwork[] = "petrel";
constexpr char kLoopbackNetwork[] = "petrel-lo";
constexpr int64_t kPluginTimeoutMs = 60 * 1000;  // iptables waits for its lock
constexpr size_t kRecordMaxBytes = 256 * 1024;
// How long the bridge's host rules, once checked, count as there (EnsureHostRules).
constexpr TimeMs kHostRulesRecheckMs = 1000;

// What a failed program said, for the end of a one-line message.
std::string OneLine(std::string said) {
  while (!said.empty() && (said.back() == '\n' || said.back() == ' ')) said.pop_back();
  return Escape(said, 400);
}

// One run of one plugin: the command (ADD, DEL), the namespace and interface.
struct PluginCall {
  const char* command;
  std::string id, netns, ifname;
};

class Cni {
 public:
  explicit Cni(const LinuxPortOptions& options) : o_(options) {
    for (const std::string& d : o_.cni_plugin_dirs) {
      if (!path_.empty()) path_ += ':';
      path_ += d;
    }
  }

  // Where plugin `type` is, or FailedPrecondition naming it and the package.
  Result<std::string> Find(const std::string& type) const {
    for (const std::string& d : o_.cni_plugin_dirs) {
      const std::string p = d + "/" + type;
      if (access(p.c_str(), X_OK) == 0) return p;
    }
    return Status::FailedPrecondition("bridge network: CNI plugin \"" + type + "\" not found in " +
                                      path_ + " (Debian package containernetworking-plugins)");
  }

  // FailedPrecondition naming the first plugin or program an attachment needs that
  // this host lacks.
  Status CheckInstalled() const {
    for (const char* type : {"loopback", "bridge", "host-local", "portmap"}) {
      PETREL_RETURN_IF_ERROR(Find(type).status());
    }
    return FindIptables().status();
  }

  // Adds each of the bridge's host rules that `iptables -C` does not find: the
  // bridge's traffic out, answers to it and connections to its published ports (which
  // portmap's DNAT made) through FORWARD, ahead of rules that may drop them; the
  // containers' traffic leaving the bridge masqueraded. A rule flushed meanwhile comes
  // back with the next attachment that checks (AttachNetwork: at most once a second).
  Status EnsureHostRules() const {
    PETREL_ASSIGN_OR_RETURN(const std::string iptables, FindIptables());
    const std::string& br = o_.bridge_name;
    const std::string comment = "petrel bridge " + br;
    struct Rule {
      std::vector<std::string> where;  // table and chain: -t T, then -C/-I/-A CHAIN
      const char* add;
      std::vector<std::string> spec;
    };
    const Rule rules[] = {
        {{"-t", "filter"},
         "-I",
         {"FORWARD", "-i", br, "-m", "comment", "--comment", comment, "-j", "ACCEPT"}},
        {{"-t", "filter"},
         "-I",
         {"FORWARD", "-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-m",
          "comment", "--comment", comment, "-j", "ACCEPT"}},
        {{"-t", "nat"},
         "-A",
         {"POSTROUTING", "-s", o_.bridge_subnet, "!", "-o", br, "-m", "comment", "--comment",
          comment, "-j", "MASQUERADE"}},
    };
    for (const Rule& rule : rules) {
      std::vector<std::string> argv = {iptables, "-w"};
      argv.insert(argv.end(), rule.where.begin(), rule.where.end());
      const size_t verb = argv.size();
      argv.push_back("-C");
      argv.insert(argv.end(), rule.spec.begin(), rule.spec.end());
      ProcessOptions po;
      po.timeout_ms = kPluginTimeoutMs;
      ProcessResult r;
      PETREL_RETURN_IF_ERROR(RunProcess(argv, po, &r).WithContext("bridge network: iptables"));
      if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) continue;  // there already
      argv[verb] = rule.add;
      PETREL_RETURN_IF_ERROR(RunProcess(argv, po, &r).WithContext("bridge network: iptables"));
      if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        return Status::Unavailable("bridge network: iptables " + rule.where[1] + " " +
                                   rule.spec[0] + " rule for " + br + ": " +
                                   OneLine(r.err.empty() ? r.out : r.err));
      }
    }
    return Status::OK();
  }

  // The chain's plugin configurations, without name, cniVersion and prevResult.
  json Chain(const std::vector<PortSpec>& ports) const {
    json mappings = json::array();
    for (const PortSpec& p : ports) {
      if (p.host_port == 0) continue;
      json m = {
          {"hostPort", p.host_port}, {"containerPort", p.container_port}, {"protocol", p.protocol}};
      if (!p.host_ip.empty()) m["hostIP"] = p.host_ip;
      mappings.push_back(std::move(m));
    }
    json chain = json::array();
    chain.push_back({{"type", "bridge"},
                     {"bridge", o_.bridge_name},
                     {"isGateway", true},
                     {"ipMasq", false},  // the host's rule (EnsureHostRules)
                     {"hairpinMode", true},
                     {"ipam",
                      {{"type", "host-local"},
                       {"ranges", json::array({json::array({{{"subnet", o_.bridge_subnet}}})})},
                       {"routes", json::array({{{"dst", "0.0.0.0/0"}}})},
                       {"dataDir", o_.cni_state_dir + "/ipam"}}}});
    if (!mappings.empty()) {
      chain.push_back({{"type", "portmap"},
                       {"capabilities", {{"portMappings", true}}},
                       {"runtimeConfig", {{"portMappings", mappings}}},
                       {"snat", true}});
    }
    return chain;
  }

  // Runs the plugin of `conf` (its "type"), given `network` and `prev` (a result, or
  // null) as the specification has it; the plugin's result (null when it printed
  // none). Errors say the plugin, the command and the plugin's own message.
  Result<json> Run(const PluginCall& call, const char* network, json conf, const json& prev) const {
    const std::string type = conf.value("type", "");
    PETREL_ASSIGN_OR_RETURN(const std::string plugin, Find(type));
    conf["cniVersion"] = kCniVersion;
    conf["name"] = network;
    if (!prev.is_null()) conf["prevResult"] = prev;
    ProcessOptions po;
    po.input = conf.dump();
    po.timeout_ms = kPluginTimeoutMs;
    po.env = {std::string("CNI_COMMAND=") + call.command, "CNI_CONTAINERID=" + call.id,
              "CNI_NETNS=" + call.netns, "CNI_IFNAME=" + call.ifname,
              "CNI_ARGS=", "CNI_PATH=" + path_,
              // iptables, which the plugins run, is in sbin: a user's PATH may lack it.
              "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    ProcessResult r;
    const std::string what = "bridge network: CNI plugin " + type + " " + call.command;
    PETREL_RETURN_IF_ERROR(RunProcess({plugin}, po, &r).WithContext(what));
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
      // An error result on stdout: {"code": N, "msg": "...", "details": "..."}.
      std::string msg;
      json e = json::parse(r.out, nullptr, false);
      if (e.is_object() && e.contains("msg") && e["msg"].is_string()) {
        msg = e["msg"].get<std::string>();
        if (e.contains("details") && e["details"].is_string()) {
          msg += ": " + e["details"].get<std::string>();
        }
      } else {
        msg = r.err.empty() ? r.out : r.err;
      }
      return Status::Unavailable(what + ": " + OneLine(std::move(msg)));
    }
    if (r.out.find_first_not_of(" \n\t\r") == std::string::npos) return json();
    Result<json> result = ParseJson(r.out, what + " result");
    if (!result.ok() || !result->is_object()) {
      return Status::Unavailable(what + ": its result is not a JSON object");
    }
    return *result;
  }

  std::string RecordPath(const std::string& id) const {
    return o_.cni_state_dir + "/" + id + ".json";
  }

 private:
  Result<std::string> FindIptables() const {
    for (const char* dir : {"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"}) {
      const std::string p = std::string(dir) + "/iptables";
      if (access(p.c_str(), X_OK) == 0) return p;
    }
    return Status::FailedPrecondition(
        "bridge network: iptables not found in /usr/sbin, /sbin, /usr/local/sbin, /usr/bin "
        "or /bin (Debian package iptables)");
  }

  const LinuxPortOptions& o_;
  std::string path_;  // CNI_PATH: the plugin directories, ':' between
};

Status CheckId(const std::string& id) {
  if (IsPlainName(id, 64)) return Status::OK();
  return Status::InvalidArgument("network attachment \"" + Escape(id) +
                                 "\": want 1-64 of A-Z a-z 0-9 _ . - not starting with '.'");
}

// The address (without its prefix length) of the first IP in a CNI result; "" if none.
std::string FirstAddress(const json& result) {
  if (!result.is_object() || !result.contains("ips") || !result["ips"].is_array()) return "";
  for (const json& ip : result["ips"]) {
    if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) continue;
    std::string a = ip["address"].get<std::string>();
    return a.substr(0, a.find('/'));
  }
  return "";
}

// True when `path` is a network namespace (an nsfs file), not the mount point a gone
// bind mount left behind: a reboot on a host whose /run is no tmpfs, or the mount
// namespace petreld ran in gone with it.
bool IsNamespace(const std::string& path) {
  struct statfs fs;
  return statfs(path.c_str(), &fs) == 0 &&
         static_cast<long>(fs.f_type) == static_cast<long>(NSFS_MAGIC);
}

// DEL of everything `record` says was (or may have been) added, backwards; the first
// error, after trying them all. Without its namespace the plugins are given none, as the
// specification allows: they release what lives outside it (the lease, host rules).
Status Teardown(const Cni& cni, const std::string& id, const json& record) {
  std::string netns = record.value("netns", "");
  if (!IsNamespace(netns)) netns.clear();
  const json chain = record.value("chain", json::array());
  const json result = record.value("result", json());
  Status first;
  for (size_t i = chain.size(); i-- > 0;) {
    Result<json> r = cni.Run({"DEL", id, netns, "eth0"}, kNetwork, chain[i], result);
    if (!r.ok() && first.ok()) first = r.status();
  }
  Result<json> lo =
      cni.Run({"DEL", id, netns, "lo"}, kLoopbackNetwork, {{"type", "loopback"}}, json());
  if (!lo.ok() && first.ok()) first = lo.status();
  return first;
}

}  // namespace

Result<std::string> LinuxPort::AttachNetwork(const std::string& id, const std::string& netns,
                                             const std::vector<PortSpec>& ports) {
  PETREL_RETURN_IF_ERROR(CheckId(id));
  Cni cni(options_);
  PETREL_RETURN_IF_ERROR(cni.CheckInstalled());
  PETREL_RETURN_IF_ERROR(MakeDirs(options_.cni_state_dir, 0700));
  const std::string path = cni.RecordPath(id);
  // One there already was left by a container whose own records went without it (its
  // state dir wiped, a local cluster taken down): the caller owns `id` now. Undone as
  // far as its plugins can (its lease at least), then forgotten.
  if (Result<std::string> old = ReadSmallFile(path, kRecordMaxBytes); old.ok()) {
    Result<json> stale = ParseJson(*old, path);
    if (stale.ok() && stale->is_object()) (void)Teardown(cni, id, *stale);
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError(path, "unlink", errno);
  }
  {
    // Two attachments at once would both miss a rule and both add it. Checked at most
    // once a second: three iptables runs cost ~20 ms, a quarter of an attachment, and a
    // start of 20 containers needs them once.
    std::lock_guard<std::mutex> lock(host_rules_mu_);
    const TimeMs now = SystemClock()->Monotonic();
    if (!host_rules_checked_ || now - *host_rules_checked_ >= kHostRulesRecheckMs) {
      PETREL_RETURN_IF_ERROR(cni.EnsureHostRules());
      host_rules_checked_ = now;
    }
  }
  json record = {{"netns", netns}, {"chain", cni.Chain(ports)}};
  PETREL_RETURN_IF_ERROR(WriteFileAtomic(path, record.dump()));

  Status s = [&]() -> Status {
    PETREL_RETURN_IF_ERROR(
        cni.Run({"ADD", id, netns, "lo"}, kLoopbackNetwork, {{"type", "loopback"}}, json())
            .status());
    json prev;
    for (const json& conf : record["chain"]) {
      PETREL_ASSIGN_OR_RETURN(json result,
                              cni.Run({"ADD", id, netns, "eth0"}, kNetwork, conf, prev));
      if (!result.is_null()) prev = std::move(result);
    }
    if (FirstAddress(prev).empty()) {
      return Status::Unavailable("bridge network: CNI plugin bridge gave no address");
    }
    record["result"] = prev;
    return WriteFileAtomic(path, record.dump());
  }();
  if (!s.ok()) {
    (void)Teardown(cni, id, record);  // what the ADDs before the failure made
    unlink(path.c_str());
    return s;
  }
  return FirstAddress(record["result"]);
}

Status LinuxPort::DetachNetwork(const std::string& id) {
  PETREL_RETURN_IF_ERROR(CheckId(id));
  Cni cni(options_);
  const std::string path = cni.RecordPath(id);
  Result<std::string> text = ReadSmallFile(path, kRecordMaxBytes);
  if (text.status().IsNotFound()) return Status::OK();
  PETREL_RETURN_IF_ERROR(text.status());
  Result<json> record = ParseJson(*text, path);
  if (!record.ok() || !record->is_object()) {
    // Written whole by rename, so never half a record: one damaged by hand.
    return Status::Corruption("network attachment " + id + ": " + path + " is damaged");
  }
  PETREL_RETURN_IF_ERROR(Teardown(cni, id, *record).WithContext("network attachment " + id));
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError(path, "unlink", errno);
  return Status::OK();
}

}  // namespace petrel::internal
