#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lib/oci/runtime_config.h"

namespace petrel::internal {
namespace {

using nlohmann::json;

json Config(const ContainerSpec& spec, const ImageConfig& image, RuntimeConfigOptions o = {}) {
  if (o.rootfs.empty()) o.rootfs = "/b/rootfs";
  Result<std::string> r = MakeRuntimeConfig(spec, image, o);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  return json::parse(*r);
}

TEST_SUITE("oci") {
  TEST_CASE("command and args combine with the image's entrypoint and cmd as Docker does") {
    ImageConfig image;
    image.entrypoint = {"/entry"};
    image.cmd = {"default-arg"};
    ContainerSpec spec;
    spec.name = "c";
    CHECK(Config(spec, image)["process"]["args"] == json({"/entry", "default-arg"}));
    spec.args = {"x", "y"};
    CHECK(Config(spec, image)["process"]["args"] == json({"/entry", "x", "y"}));
    spec.command = {"/bin/sh", "-c"};
    CHECK(Config(spec, image)["process"]["args"] == json({"/bin/sh", "-c", "x", "y"}));
    spec.args.clear();
    CHECK(Config(spec, image)["process"]["args"] == json({"/bin/sh", "-c"}));

    Result<std::string> none =
        MakeRuntimeConfig(ContainerSpec{}, ImageConfig{}, RuntimeConfigOptions{});
    REQUIRE_FALSE(none.ok());
    CHECK(none.status().message().find("no command") != std::string::npos);
  }

  TEST_CASE("env: the spec overrides the image, PATH defaults, cwd and hostname") {
    ImageConfig image;
    image.cmd = {"/bin/true"};
    image.env = {"A=image", "B=image"};
    image.working_dir = "/srv";
    ContainerSpec spec;
    spec.name = "n";
    spec.env = {{"B", "spec"}, {"C", "x=y"}};
    json c = Config(spec, image);
    CHECK(c["process"]["env"] ==
          json({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=image",
                "B=spec", "C=x=y"}));
    CHECK(c["process"]["cwd"] == "/srv");
    CHECK(c["hostname"] == "n");
    spec.working_dir = "/w";
    spec.hostname = "h";
    c = Config(spec, image);
    CHECK(c["process"]["cwd"] == "/w");
    CHECK(c["hostname"] == "h");
  }

  TEST_CASE("users: ids, names from the image's passwd and group, and clear errors") {
    ImageConfig image;
    image.cmd = {"/bin/true"};
    RuntimeConfigOptions o;
    o.passwd = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/:/bin/sh\n";
    o.group = "root:x:0:\nstaff:x:50:\n";
    ContainerSpec spec;
    spec.name = "u";
    auto user = [&](const std::string& u) {
      spec.user = u;
      json c = Config(spec, image, o);
      return std::make_pair(c["process"]["user"]["uid"].get<int64_t>(),
                            c["process"]["user"]["gid"].get<int64_t>());
    };
    CHECK(user("") == std::make_pair(int64_t{0}, int64_t{0}));
    CHECK(user("web") == std::make_pair(int64_t{1000}, int64_t{1001}));
    CHECK(user("1000") == std::make_pair(int64_t{1000}, int64_t{1001}));
    CHECK(user("4242") == std::make_pair(int64_t{4242}, int64_t{0}));
    CHECK(user("65534:65534") == std::make_pair(int64_t{65534}, int64_t{65534}));
    CHECK(user("web:staff") == std::make_pair(int64_t{1000}, int64_t{50}));
    spec.user = "nobody";
    Result<std::string> r = MakeRuntimeConfig(spec, image, o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message() == "user \"nobody\" is not in the image's /etc/passwd");
    spec.user = "web:wheel";
    r = MakeRuntimeConfig(spec, image, o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message() == "group \"wheel\" is not in the image's /etc/group");
  }

  TEST_CASE(
      "security defaults: Docker's capabilities, masked and read-only paths, no new privileges") {
    ImageConfig image;
    image.cmd = {"/bin/true"};
    ContainerSpec spec;
    spec.name = "s";
    spec.read_only_rootfs = true;
    json c = Config(spec, image);
    CHECK(c["process"]["noNewPrivileges"] == true);
    CHECK(c["process"]["capabilities"]["bounding"].size() == 14);
    CHECK(c["process"]["capabilities"]["bounding"][0] == "CAP_CHOWN");
    CHECK(c["root"] == json({{"path", "/b/rootfs"}, {"readonly", true}}));
    CHECK(c["linux"]["maskedPaths"].size() == 11);
    CHECK(c["linux"]["readonlyPaths"].size() == 5);
    CHECK(c["linux"]["resources"]["devices"] == json::parse(R"([{"allow":false,"access":"rwm"}])"));
    bool sys_ro = false;
    for (const json& m : c["mounts"]) {
      if (m["destination"] == "/sys") sys_ro = m["options"].back() == "ro";
    }
    CHECK(sys_ro);
  }

  // Issue 9: securityContext. The three capability sets config.json has are the same.
  TEST_CASE("securityContext: capabilities added and dropped, seccomp Unconfined, privileged") {
    ImageConfig image;
    image.cmd = {"/bin/true"};
    ContainerSpec spec;
    spec.name = "sc";
    auto caps = [&](RuntimeConfigOptions o = {}) {
      json c = Config(spec, image, o)["process"]["capabilities"];
      CHECK(c["effective"] == c["bounding"]);
      CHECK(c["permitted"] == c["bounding"]);
      return c["bounding"].get<std::vector<std::string>>();
    };
    auto has = [](const std::vector<std::string>& list, const char* cap) {
      return std::find(list.begin(), list.end(), cap) != list.end();
    };
    SecurityContext& sc = spec.security_context;
    sc.capabilities_add = {"NET_ADMIN", "CAP_SYS_TIME"};
    sc.capabilities_drop = {"NET_RAW", "CAP_MKNOD"};
    std::vector<std::string> got = caps();
    CHECK(got.size() == 14);
    CHECK(has(got, "CAP_NET_ADMIN"));
    CHECK(has(got, "CAP_SYS_TIME"));
    CHECK_FALSE(has(got, "CAP_NET_RAW"));
    CHECK_FALSE(has(got, "CAP_MKNOD"));
    CHECK(has(got, "CAP_CHOWN"));

    sc.capabilities_drop = {"ALL"};
    sc.capabilities_add = {"NET_BIND_SERVICE"};
    CHECK(caps() == std::vector<std::string>{"CAP_NET_BIND_SERVICE"});
    sc.capabilities_add = {};
    CHECK(caps().empty());
    sc.capabilities_drop = {};
    sc.capabilities_add = {"ALL"};
    CHECK(caps().size() == 41);
    RuntimeConfigOptions old_kernel;  // up to CAP_AUDIT_READ (37): Linux 3.16 to 5.8
    old_kernel.host_capabilities = (uint64_t{1} << 38) - 1;
    CHECK(caps(old_kernel).size() == 38);
    RuntimeConfigOptions limited;  // a runtime without CAP_SYS_RESOURCE (24) to give
    limited.host_capabilities = ~(uint64_t{1} << 24);
    CHECK(caps(limited).size() == 40);
    CHECK_FALSE(has(caps(limited), "CAP_SYS_RESOURCE"));
    sc.capabilities_add = {};

    // On the host's network NET_RAW goes unless asked for.
    spec.network = NetworkMode::kHost;
    got = caps();
    CHECK(got.size() == 13);
    CHECK_FALSE(has(got, "CAP_NET_RAW"));
    sc.capabilities_add = {"NET_RAW"};
    CHECK(has(caps(), "CAP_NET_RAW"));
    sc.capabilities_add = {"ALL"};
    CHECK(has(caps(), "CAP_NET_RAW"));
    sc.capabilities_add = {};
    spec.network = NetworkMode::kNone;
    CHECK(has(caps(), "CAP_NET_RAW"));
    spec.network = NetworkMode::kHost;

    // Unconfined: no seccomp filter, all else as by default.
    CHECK(Config(spec, image)["linux"].contains("seccomp"));
    sc.seccomp = SecurityContext::Seccomp::kUnconfined;
    json c = Config(spec, image);
    CHECK_FALSE(c["linux"].contains("seccomp"));
    CHECK(c["linux"]["maskedPaths"].size() == 11);
    CHECK(c["linux"]["resources"]["devices"] == json::parse(R"([{"allow":false,"access":"rwm"}])"));
    sc.seccomp = SecurityContext::Seccomp::kRuntimeDefault;

    // Privileged: every capability the kernel has (NET_RAW too, drop ignored), no seccomp,
    // every device, /proc and /sys as they are.
    sc.privileged = true;
    sc.capabilities_drop = {"ALL"};
    CHECK(caps().size() == 41);
    CHECK(caps(old_kernel).size() == 38);
    CHECK(caps(limited).size() == 40);
    CHECK(has(caps(), "CAP_NET_RAW"));
    CHECK(has(caps(), "CAP_SYS_ADMIN"));
    c = Config(spec, image);
    CHECK_FALSE(c["linux"].contains("seccomp"));
    CHECK_FALSE(c["linux"].contains("maskedPaths"));
    CHECK_FALSE(c["linux"].contains("readonlyPaths"));
    CHECK(c["linux"]["resources"]["devices"] == json::parse(R"([{"allow":true,"access":"rwm"}])"));
    for (const json& m : c["mounts"]) {
      if (m["destination"] == "/sys") CHECK(m["options"].back() == "rw");
    }
  }

  TEST_CASE("mounts, limits, rlimits and networks") {
    ImageConfig image;
    image.cmd = {"/bin/true"};
    ContainerSpec spec;
    spec.name = "m";
    MountSpec bind;
    bind.source = "/host/data";
    bind.target = "/data";
    bind.read_only = true;
    MountSpec tmp;
    tmp.type = MountSpec::Type::kTmpfs;
    tmp.target = "/tmp";
    tmp.size_bytes = 1 << 20;
    spec.mounts = {bind, tmp};
    spec.resources.memory_bytes = 64 << 20;
    spec.resources.cpu_millis = 500;
    spec.resources.pids = 64;
    RuntimeConfigOptions o;
    o.cgroups_path = "/petrel/m";
    o.nofile = 4096;
    json c = Config(spec, image, o);
    json last2 = {c["mounts"][c["mounts"].size() - 2], c["mounts"].back()};
    CHECK(
        last2[0] ==
        json::parse(
            R"({"destination":"/data","type":"bind","source":"/host/data","options":["rbind","rprivate","ro"]})"));
    CHECK(last2[1]["options"] == json({"nosuid", "nodev", "mode=1777", "size=1048576"}));
    CHECK(c["linux"]["cgroupsPath"] == "/petrel/m");
    CHECK(c["linux"]["resources"]["memory"]["limit"] == 64 << 20);
    CHECK(c["linux"]["resources"]["cpu"] == json({{"quota", 50000}, {"period", 100000}}));
    CHECK(c["linux"]["resources"]["pids"]["limit"] == 64);
    CHECK(c["process"]["rlimits"][0]["hard"] == 4096);
    CHECK(c["linux"]["namespaces"].size() == 5);  // with a network namespace of its own
    // petrel's seccomp profile: all allowed but a list, which fails with EPERM.
    const json& seccomp = c["linux"]["seccomp"];
    CHECK(seccomp["defaultAction"] == "SCMP_ACT_ALLOW");
    CHECK(seccomp["syscalls"][0]["action"] == "SCMP_ACT_ERRNO");
    CHECK(seccomp["syscalls"][0]["errnoRet"] == 1);
    for (const char* name : {"unshare", "setns", "mount", "keyctl", "bpf", "perf_event_open"}) {
      CHECK(std::find(seccomp["syscalls"][0]["names"].begin(),
                      seccomp["syscalls"][0]["names"].end(),
                      name) != seccomp["syscalls"][0]["names"].end());
    }
    CHECK(seccomp["syscalls"].back() ==
          json::parse(R"({"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38})"));

    // Limits petrel enforces itself (crun on a hybrid host) stay out of the config.
    c = Config(spec, image);
    CHECK_FALSE(c["linux"].contains("cgroupsPath"));
    CHECK_FALSE(c["linux"]["resources"].contains("memory"));

    // Networks: none (a namespace the runtime makes), host (none: the host's), bridge
    // (the namespace the adapter made, by its path).
    PortSpec port;
    port.container_port = 80;
    spec.ports = {port};
    auto network = [&](RuntimeConfigOptions opts = {}) {
      json n;
      const json config = Config(spec, image, opts);
      for (const json& ns : config["linux"]["namespaces"]) {
        if (ns["type"] == "network") n = ns;
      }
      return n;
    };
    CHECK(network() == json({{"type", "network"}}));  // kNone, ContainerSpec's default
    spec.ports[0].host_port = 8080;
    Result<std::string> r = MakeRuntimeConfig(spec, image, RuntimeConfigOptions{});
    CHECK(r.status().message() == "port 80: a container without a network publishes no port");
    spec.network = NetworkMode::kHost;
    r = MakeRuntimeConfig(spec, image, RuntimeConfigOptions{});
    CHECK(r.status().message() ==
          "port 80 published as 8080: the host's network publishes a port as itself");
    spec.ports[0].host_port = 80;
    CHECK(network().is_null());
    spec.network = NetworkMode::kBridge;
    spec.ports[0].host_port = 8080;
    r = MakeRuntimeConfig(spec, image, RuntimeConfigOptions{});
    CHECK(r.status().message() == "a container on the bridge needs its network namespace");
    RuntimeConfigOptions bridged;
    bridged.netns_path = "/run/petrel/netns/m";
    CHECK(network(bridged) == json({{"type", "network"}, {"path", "/run/petrel/netns/m"}}));
  }
}

}  // namespace
}  // namespace petrel::internal
