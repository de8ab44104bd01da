// Tests of lib/spec: quantities, durations, validation, canonical JSON, template hash.
#include "petrel/spec.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "lib/spec/check.h"
#include "tests/lib/files.h"

namespace petrel {
namespace {

// "<value>" when text parses, else the error message.
template <typename F>
std::string Show(F parse, const std::string& text) {
  Result<int64_t> r = parse(text);
  return r.ok() ? std::to_string(*r) : r.status().message();
}

WorkloadSpec ValidSpec() {
  WorkloadSpec s;
  s.name = "web";
  s.image = "oci-archive:/opt/images/busybox.tar";
  return s;
}

// "path: reason" of the first failure after `mutate`, or "" when valid.
std::string CheckAfter(const std::function<void(WorkloadSpec&)>& mutate) {
  WorkloadSpec s = ValidSpec();
  mutate(s);
  std::optional<internal::FieldError> e = internal::CheckWorkload(s);
  return e ? e->path + ": " + e->reason : "";
}

WorkloadSpec FullSpec() {
  WorkloadSpec s = ValidSpec();
  s.labels = {{"app", "web"}, {"example.com/tier", "front"}};
  s.replicas = 3;
  s.command = {"/bin/sh", "-c"};
  s.args = {"echo \"hi\"\n; sleep 1", ""};
  s.env = {{"MODE", "prod"}, {"EMPTY", ""}, {"UNICODE", "gr\xc3\xbc\xc3\x9f"}};
  s.working_dir = "/srv";
  s.user = "1000:1000";
  s.read_only_rootfs = true;
  s.ports = {{80, 8080, "tcp", ""}, {53, 0, "udp", ""}};
  MountSpec tmp;
  tmp.type = MountSpec::Type::kTmpfs;
  tmp.target = "/tmp";
  tmp.size_bytes = 16 << 20;
  MountSpec data;
  data.source = "/var/lib/web";
  data.target = "/data";
  data.read_only = true;
  s.mounts = {tmp, data};
  s.resources = {64 << 20, 500, 64};
  s.restart_policy = RestartPolicy::kOnFailure;
  s.backoff = {500, 60000, 120000};
  s.termination_grace_ms = 5000;
  return s;
}

// FullSpec with every placement field set (and one replica, as exclusive wants).
WorkloadSpec PlacedSpec() {
  WorkloadSpec s = FullSpec();
  s.replicas = 1;
  s.node_selector = {{"petrel.dev/disk", "ssd"}, {"zone", "north"}, {"gpu", ""}};
  s.preferred_nodes = {"gw-2", "gw-1.lab"};
  s.exclusive = true;
  s.standby = "warm";
  s.standby_replicas = 1;
  return s;
}

TEST_SUITE("spec") {
  TEST_CASE("ParseBytes reads Kubernetes memory quantities") {
    struct {
      const char* text;
      const char* want;
    } cases[] = {
        {"64Mi", "67108864"},
        {"1G", "1000000000"},
        {"128974848", "128974848"},
        {"129e6", "129000000"},
        {"129E6", "129000000"},
        {"12e+2", "1200"},
        {"1.5Gi", "1610612736"},
        {".5Ki", "512"},
        {"5.", "5"},
        {"00064Mi", "67108864"},
        {"0", "0"},
        {"-0", "0"},
        {"1Ki", "1024"},
        {"1k", "1000"},
        {"1M", "1000000"},
        {"1T", "1000000000000"},
        {"1Ti", "1099511627776"},
        {"1P", "1000000000000000"},
        {"1E", "1000000000000000000"},
        {"7Ei", "8070450532247928832"},
        {"9223372036854775807", "9223372036854775807"},
        {"1000000000000000000000e-18", "1000"},
        // Fractions of a byte round up, as Kubernetes' Value() does.
        {"0.5", "1"},
        {"1500m", "2"},
        {"100m", "1"},
        {"1n", "1"},
        {"1e-3", "1"},
        {"0.9Ei", "1037629354146162279"},
        {"64Q", "\"64Q\" is not a quantity"},
        {"", "\"\" is not a quantity"},
        {"Mi", "\"Mi\" is not a quantity"},
        {"1.2.3", "\"1.2.3\" is not a quantity"},
        {"1 Mi", "\"1 Mi\" is not a quantity"},
        {" 1", "\" 1\" is not a quantity"},
        {"1mi", "\"1mi\" is not a quantity"},
        {"1K", "\"1K\" is not a quantity"},
        {"1Mib", "\"1Mib\" is not a quantity"},
        {"1e", "\"1e\" is not a quantity"},
        {"1e+", "\"1e+\" is not a quantity"},
        {"1e3Mi", "\"1e3Mi\" is not a quantity"},
        {"0x10", "\"0x10\" is not a quantity"},
        {"+1", "\"+1\" is not a quantity"},
        {"--1", "\"--1\" is not a quantity"},
        {"1_000", "\"1_000\" is not a quantity"},
        {"inf", "\"inf\" is not a quantity"},
        {"-1", "\"-1\" must not be negative"},
        {"-64Mi", "\"-64Mi\" must not be negative"},
        {"8Ei", "\"8Ei\" is out of range"},
        {"9223372036854775808", "\"9223372036854775808\" is out of range"},
        {"99999999999999999999", "\"99999999999999999999\" is out of range"},
        {"10E", "\"10E\" is out of range"},
        {"1e999", "\"1e999\" is out of range"},
        {"1e1000", "\"1e1000\" is out of range"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.text);
      CHECK(Show(ParseBytes, c.text) == c.want);
    }
  }

  TEST_CASE("ParseCpuMillis reads CPU quantities in millicores") {
    struct {
      const char* text;
      const char* want;
    } cases[] = {
        {"500m", "500"},
        {"1.5", "1500"},
        {"2", "2000"},
        {"0.1", "100"},
        {"0", "0"},
        {"1k", "1000000"},
        {"0.1m", "1"},  // rounds up to a whole millicore
        {"100u", "1"},
        {"0.0005", "1"},
        {"250m", "250"},
        {"abc", "\"abc\" is not a quantity"},
        {"500 m", "\"500 m\" is not a quantity"},
        {"-1", "\"-1\" must not be negative"},
        {"9223372036854775807", "\"9223372036854775807\" is out of range"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.text);
      CHECK(Show(ParseCpuMillis, c.text) == c.want);
    }
  }

  TEST_CASE("ParseDurationMs reads Go-style durations") {
    struct {
      const char* text;
      const char* want;
    } cases[] = {
        {"500ms", "500"},
        {"10s", "10000"},
        {"5m", "300000"},
        {"1h", "3600000"},
        {"1m30s", "90000"},
        {"1h1m1s1ms", "3661001"},
        {"1.5s", "1500"},
        {"1.5h", "5400000"},
        {"0", "0"},
        {"0s", "0"},
        {"-0", "0"},
        {"0.5ms", "1"},  // rounds up to a whole millisecond
        {"2562047788015h", "9223372036854000000"},
        {"2562047788016h", "\"2562047788016h\" is out of range"},
        {"", "\"\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {"10", "\"10\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {"s", "\"s\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {"1x", "\"1x\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {"1 s", "\"1 s\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {"1d", "\"1d\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {"1m30", "\"1m30\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {"1hh", "\"1hh\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {"--1s", "\"--1s\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {"-1s", "\"-1s\" must not be negative"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.text);
      CHECK(Show(ParseDurationMs, c.text) == c.want);
    }
  }

  TEST_CASE("FormatDurationMs writes what ParseDurationMs reads") {
    CHECK(FormatDurationMs(0) == "0s");
    CHECK(FormatDurationMs(500) == "500ms");
    CHECK(FormatDurationMs(90000) == "1m30s");
    CHECK(FormatDurationMs(3600000) == "1h");
    CHECK(FormatDurationMs(3661001) == "1h1m1s1ms");
    CHECK(FormatDurationMs(90500) == "1m30s500ms");
    CHECK(FormatDurationMs(-1500) == "-1s500ms");
    CHECK(FormatDurationMs(std::numeric_limits<int64_t>::min()).substr(0, 1) == "-");
    for (int64_t ms : {int64_t{1}, int64_t{999}, int64_t{1000}, int64_t{59999}, int64_t{86400000},
                       std::numeric_limits<int64_t>::max()}) {
      CAPTURE(ms);
      Result<int64_t> back = ParseDurationMs(FormatDurationMs(ms));
      REQUIRE(back.ok());
      CHECK(*back == ms);
    }
  }

  TEST_CASE("names of phases and restart policies") {
    for (Phase p : {Phase::kPending, Phase::kCreating, Phase::kRunning, Phase::kExited,
                    Phase::kCrashLoop, Phase::kStopping}) {
      CHECK(ParsePhase(PhaseName(p)) == p);
    }
    CHECK(std::string(PhaseName(Phase::kCrashLoop)) == "CrashLoop");
    CHECK_FALSE(ParsePhase("running").has_value());
    CHECK(std::string(RestartPolicyName(RestartPolicy::kOnFailure)) == "OnFailure");
    for (RestartPolicy p :
         {RestartPolicy::kAlways, RestartPolicy::kOnFailure, RestartPolicy::kNever}) {
      CHECK(internal::ParseRestartPolicy(RestartPolicyName(p)) == p);
    }
    CHECK_FALSE(internal::ParseRestartPolicy("always").has_value());
  }

  TEST_CASE("KeyPath keeps a field path on one short line") {
    CHECK(internal::KeyPath("spec.env", "A\nB") == "spec.env.A\\nB");
    CHECK(internal::KeyPath("spec.env", std::string(70, 'x')) ==
          "spec.env." + std::string(64, 'x') + "...");
  }

  TEST_CASE("operator== compares every field") {
    WorkloadSpec a = FullSpec();
    CHECK(a == FullSpec());
    std::function<void(WorkloadSpec&)> changes[] = {
        [](WorkloadSpec& s) { s.name = "x"; },
        [](WorkloadSpec& s) { s.labels["x"] = "y"; },
        [](WorkloadSpec& s) { s.replicas++; },
        [](WorkloadSpec& s) { s.image += "x"; },
        [](WorkloadSpec& s) { s.command.push_back("x"); },
        [](WorkloadSpec& s) { s.args.clear(); },
        [](WorkloadSpec& s) { s.env["X"] = ""; },
        [](WorkloadSpec& s) { s.working_dir = "/"; },
        [](WorkloadSpec& s) { s.user = "1"; },
        [](WorkloadSpec& s) { s.read_only_rootfs = false; },
        [](WorkloadSpec& s) { s.ports[0].host_port = 1; },
        [](WorkloadSpec& s) { s.ports[1].protocol = "tcp"; },
        [](WorkloadSpec& s) { s.mounts[0].size_bytes = 1; },
        [](WorkloadSpec& s) { s.mounts[1].read_only = false; },
        [](WorkloadSpec& s) { s.mounts[1].type = MountSpec::Type::kTmpfs; },
        [](WorkloadSpec& s) { s.resources.pids = 1; },
        [](WorkloadSpec& s) { s.restart_policy = RestartPolicy::kNever; },
        [](WorkloadSpec& s) { s.image_pull_policy = PullPolicy::kAlways; },
        [](WorkloadSpec& s) { s.backoff.reset_after_ms = 1; },
        [](WorkloadSpec& s) { s.termination_grace_ms = 1; },
        [](WorkloadSpec& s) { s.node_selector["zone"] = "north"; },
        [](WorkloadSpec& s) { s.preferred_nodes.push_back("gw-1"); },
        [](WorkloadSpec& s) { s.exclusive = true; },
        [](WorkloadSpec& s) { s.standby = "warm"; },
        [](WorkloadSpec& s) { s.standby_replicas = 2; },
        [](WorkloadSpec& s) { s.security_context.privileged = true; },
        [](WorkloadSpec& s) { s.security_context.capabilities_add = {"NET_ADMIN"}; },
        [](WorkloadSpec& s) { s.security_context.capabilities_drop = {"ALL"}; },
        [](WorkloadSpec& s) { s.security_context.seccomp = SecurityContext::Seccomp::kUnconfined; },
    };
    for (size_t i = 0; i < std::size(changes); i++) {
      CAPTURE(i);
      WorkloadSpec b = FullSpec();
      changes[i](b);
      CHECK_FALSE(a == b);
    }
    ReplicaStatus r1, r2;
    CHECK(r1 == r2);
    r2.spec_hash = "x";
    CHECK(r1 != r2);
  }

  TEST_CASE("CheckWorkload accepts valid specs") {
    CHECK(CheckAfter([](WorkloadSpec&) {}) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s = FullSpec(); }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.name = std::string(63, 'a'); }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.name = "0-web-1"; }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.replicas = 0; }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.replicas = internal::kMaxReplicas; }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.labels["app.kubernetes.io/name"] = "My_App.v1"; }) ==
          "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.labels["empty"] = ""; }) == "");
    for (const char* image :
         {"busybox", "busybox:1.36", "docker.io/library/busybox:1.36",
          "localhost:5000/team/"
          "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          "oci:/var/oci/busybox", "oci:/var/oci/busybox:latest", "docker-archive:/tmp/x.tar"}) {
      CAPTURE(image);
      CHECK(CheckAfter([&](WorkloadSpec& s) { s.image = image; }) == "");
    }
    CHECK(CheckAfter([](WorkloadSpec& s) { s.user = "0"; }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.user = "4294967294:0"; }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) {
            s.ports = {{53, 53, "tcp", ""}, {53, 53, "udp", ""}};
          }) == "");
    CHECK(CheckAfter(
              [](WorkloadSpec& s) { s.resources.memory_bytes = internal::kMaxMemoryBytes; }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.backoff = {1000, 1000, 0}; }) == "");
  }

  TEST_CASE("CheckWorkload accepts placement fields") {
    CHECK(CheckAfter([](WorkloadSpec& s) { s = PlacedSpec(); }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) {
            s = PlacedSpec();
            s.replicas = 0;
          }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.preferred_nodes = {std::string(63, 'n')}; }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.preferred_nodes = {"0", "A.b-C"}; }) == "");
    // Without exclusive, any number of replicas may have a standby.
    CHECK(CheckAfter([](WorkloadSpec& s) {
            s.replicas = 3;
            s.standby = "warm";
          }) == "");
  }

  TEST_CASE("CheckWorkload names the bad placement field") {
    struct {
      std::function<void(WorkloadSpec&)> mutate;
      const char* want;
    } cases[] = {
        {[](WorkloadSpec& s) { s.node_selector["bad key"] = "x"; },
         "spec.nodeSelector.bad key: \"bad key\" is not a label key ([prefix/]name; name is at "
         "most 63 of [A-Za-z0-9-_.], alphanumeric at both ends)"},
        {[](WorkloadSpec& s) { s.node_selector["zone"] = "-north"; },
         "spec.nodeSelector.zone: \"-north\" is not a label value (at most 63 of [A-Za-z0-9-_.], "
         "alphanumeric at both ends)"},
        {[](WorkloadSpec& s) {
           s.preferred_nodes = {"gw-1", "gw_2"};
         },
         "spec.preferredNodes[1]: \"gw_2\" is not a node name (1 to 63 letters, digits, '.' or "
         "'-', starting with a letter or digit)"},
        {[](WorkloadSpec& s) { s.preferred_nodes = {""}; },
         "spec.preferredNodes[0]: \"\" is not a node name*"},
        {[](WorkloadSpec& s) { s.preferred_nodes = {"-gw"}; },
         "spec.preferredNodes[0]: \"-gw\" is not a node name*"},
        {[](WorkloadSpec& s) { s.preferred_nodes = {std::string(64, 'n')}; },
         "spec.preferredNodes[0]: *"},
        {[](WorkloadSpec& s) {
           s.preferred_nodes = {"gw-1", "gw-2", "gw-1"};
         },
         "spec.preferredNodes[2]: duplicates spec.preferredNodes[0]"},
        {[](WorkloadSpec& s) {
           s.exclusive = true;
           s.replicas = 2;
         },
         "spec.replicas: must be 0 or 1 when spec.exclusive is true"},
        {[](WorkloadSpec& s) { s.standby = "hot"; },
         "spec.standby: \"hot\" is not a standby mode (want warm, or leave it out)"},
        {[](WorkloadSpec& s) { s.standby = "Warm"; }, "spec.standby: \"Warm\" is not a standby*"},
        {[](WorkloadSpec& s) { s.standby_replicas = -1; }, "spec.standbyReplicas: *"},
    };
    for (size_t i = 0; i < std::size(cases); i++) {
      CAPTURE(i);
      std::string got = CheckAfter(cases[i].mutate);
      std::string want = cases[i].want;
      CAPTURE(got);
      if (want.back() == '*') {
        want.pop_back();
        CHECK(got.substr(0, want.size()) == want);
      } else {
        CHECK(got == want);
      }
    }
  }

  TEST_CASE("CheckWorkload names the first bad field") {
    struct {
      std::function<void(WorkloadSpec&)> mutate;
      const char* want;
    } cases[] = {
        {[](WorkloadSpec& s) { s.name = ""; }, "metadata.name: is required"},
        {[](WorkloadSpec& s) { s.name = "Web"; },
         "metadata.name: \"Web\" is not a DNS-1123 label (lowercase letters, digits and '-', "
         "starting and ending with a letter or digit, at most 63)"},
        {[](WorkloadSpec& s) { s.name = std::string(64, 'a'); }, "metadata.name: \"*"},
        {[](WorkloadSpec& s) { s.name = "-web"; }, "metadata.name: \"-web\" is not*"},
        {[](WorkloadSpec& s) { s.name = "web-"; }, "metadata.name: \"web-\" is not*"},
        {[](WorkloadSpec& s) { s.name = "my.web"; }, "metadata.name: \"my.web\" is not*"},
        {[](WorkloadSpec& s) { s.name = "my_web"; }, "metadata.name: \"my_web\" is not*"},
        {[](WorkloadSpec& s) { s.labels["bad key"] = "x"; },
         "metadata.labels.bad key: \"bad key\" is not a label key*"},
        {[](WorkloadSpec& s) { s.labels["Example.com/app"] = "x"; },
         "metadata.labels.Example.com/app: \"Example.com/app\" is not a label key*"},
        {[](WorkloadSpec& s) { s.labels["/app"] = "x"; }, "metadata.labels./app: \"/app\" is not*"},
        {[](WorkloadSpec& s) { s.labels["a/b/c"] = "x"; },
         "metadata.labels.a/b/c: \"a/b/c\" is not*"},
        {[](WorkloadSpec& s) { s.labels[std::string(64, 'k')] = "x"; }, "metadata.labels.kkk*"},
        {[](WorkloadSpec& s) { s.labels["app"] = "-web"; },
         "metadata.labels.app: \"-web\" is not a label value*"},
        {[](WorkloadSpec& s) { s.labels["app"] = std::string(64, 'v'); },
         "metadata.labels.app: \"vvv*"},
        {[](WorkloadSpec& s) { s.replicas = -1; }, "spec.replicas: must not be negative"},
        {[](WorkloadSpec& s) { s.replicas = 10001; }, "spec.replicas: must be at most 10000"},
        {[](WorkloadSpec& s) { s.image = ""; }, "spec.image: is required"},
        {[](WorkloadSpec& s) { s.image = "oci-archive:busybox.tar"; },
         "spec.image: \"busybox.tar\" must be an absolute path"},
        {[](WorkloadSpec& s) { s.image = "oci:"; }, "spec.image: \"\" must be an absolute path"},
        {[](WorkloadSpec& s) { s.image = "docker-archive:/a/../b.tar"; },
         "spec.image: \"/a/../b.tar\" must not contain \"..\""},
        {[](WorkloadSpec& s) { s.image = "busy box"; },
         "spec.image: \"busy box\" is not an image (want oci:DIR, oci-archive:FILE, "
         "docker-archive:FILE or a registry reference): repository \"busy box\" has a bad "
         "component*"},
        {[](WorkloadSpec& s) { s.image = "ghcr.io/Org/app:1.2"; },
         "spec.image: \"ghcr.io/Org/app:1.2\" is not an image (want oci:DIR, oci-archive:FILE, "
         "docker-archive:FILE or a registry reference): repository \"Org/app\" must be "
         "lowercase"},
        {[](WorkloadSpec& s) { s.image = "localhost:5000/app@sha256:0123abcd"; },
         "spec.image: \"localhost:5000/app@sha256:0123abcd\" is not an image*"},
        {[](WorkloadSpec& s) { s.image = "docker://busybox"; },
         "spec.image: \"docker://busybox\"*"},
        {[](WorkloadSpec& s) { s.image = "/opt/x.tar"; }, "spec.image: \"/opt/x.tar\" is not*"},
        {[](WorkloadSpec& s) { s.command = {""}; }, "spec.command[0]: must not be empty"},
        {[](WorkloadSpec& s) {
           s.command = {"/bin/sh", std::string("a\0b", 3)};
         },
         "spec.command[1]: must not contain NUL"},
        {[](WorkloadSpec& s) {
           s.args = {"ok", "\xff"};
         },
         "spec.args[1]: must be valid UTF-8"},
        {[](WorkloadSpec& s) { s.args = {"\xc0\xaf"}; }, "spec.args[0]: must be valid UTF-8"},
        {[](WorkloadSpec& s) { s.args = {"\xed\xa0\x80"}; }, "spec.args[0]: must be valid UTF-8"},
        {[](WorkloadSpec& s) { s.args = {"\xe2\x82"}; }, "spec.args[0]: must be valid UTF-8"},
        {[](WorkloadSpec& s) { s.env["1X"] = "a"; },
         "spec.env.1X: \"1X\" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"},
        {[](WorkloadSpec& s) { s.env["A-B"] = "a"; }, "spec.env.A-B: \"A-B\" is not*"},
        {[](WorkloadSpec& s) { s.env[""] = "a"; }, "spec.env.: \"\" is not*"},
        {[](WorkloadSpec& s) { s.env["MODE"] = std::string("a\0b", 3); },
         "spec.env.MODE: must not contain NUL"},
        {[](WorkloadSpec& s) { s.working_dir = "srv"; },
         "spec.workingDir: \"srv\" must be an absolute path"},
        {[](WorkloadSpec& s) { s.working_dir = "/srv/.."; },
         "spec.workingDir: \"/srv/..\" must not contain \"..\""},
        {[](WorkloadSpec& s) { s.user = "bob"; },
         "spec.user: \"bob\" is not uid or uid:gid (numbers)"},
        {[](WorkloadSpec& s) { s.user = "1000:"; }, "spec.user: \"1000:\" is not*"},
        {[](WorkloadSpec& s) { s.user = ":1000"; }, "spec.user: \":1000\" is not*"},
        {[](WorkloadSpec& s) { s.user = "1:2:3"; }, "spec.user: \"1:2:3\" is not*"},
        {[](WorkloadSpec& s) { s.user = "4294967295"; }, "spec.user: \"4294967295\" is not*"},
        {[](WorkloadSpec& s) { s.user = "-1"; }, "spec.user: \"-1\" is not*"},
        {[](WorkloadSpec& s) {
           s.ports = {{0, 0, "tcp", ""}};
         },
         "spec.ports[0].containerPort: must be between 1 and 65535"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 0, "tcp", ""}, {65536, 0, "tcp", ""}};
         },
         "spec.ports[1].containerPort: must be between 1 and 65535"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, -1, "tcp", ""}};
         },
         "spec.ports[0].hostPort: must be between 0 and 65535"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 65536, "tcp", ""}};
         },
         "spec.ports[0].hostPort: must be between 0 and 65535"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 0, "sctp", ""}};
         },
         "spec.ports[0].protocol: \"sctp\" is not tcp or udp"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 8080, "tcp", "::1"}};
         },
         "spec.ports[0].hostIP: \"::1\" is not an IPv4 address (IPv6 is not published)"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 8080, "tcp", "127.0.0.1"}, {81, 8081, "tcp", "256.0.0.1"}};
         },
         "spec.ports[1].hostIP: \"256.0.0.1\" is not an IPv4 address (IPv6 is not published)"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 8080, "tcp", "10.0.0"}};
         },
         "spec.ports[0].hostIP: \"10.0.0\" is not an IPv4 address (IPv6 is not published)"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 8080, "tcp", "10.0.0.01"}};
         },
         "spec.ports[0].hostIP: \"10.0.0.01\" is not an IPv4 address (IPv6 is not published)"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 0, "tcp", "127.0.0.1"}};
         },
         "spec.ports[0].hostIP: needs a hostPort"},
        {[](WorkloadSpec& s) {
           s.network = NetworkMode::kNone;
           s.ports = {{80, 0, "tcp", ""}, {81, 8081, "tcp", ""}};
         },
         "spec.ports[1].hostPort: network none publishes no port"},
        {[](WorkloadSpec& s) {
           s.network = NetworkMode::kHost;
           s.ports = {{80, 80, "tcp", ""}, {81, 8081, "tcp", ""}};
         },
         "spec.ports[1].hostPort: network host publishes a port as itself: hostPort must equal "
         "containerPort, without hostIP"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 0, "tcp", ""}, {81, 0, "tcp", ""}, {80, 8080, "tcp", ""}};
         },
         "spec.ports[2].containerPort: duplicates spec.ports[0]"},
        {[](WorkloadSpec& s) {
           s.ports = {{80, 8080, "tcp", ""}, {81, 8080, "tcp", ""}};
         },
         "spec.ports[1].hostPort: duplicates spec.ports[0]"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kTmpfs, "", "tmp", false, 0}};
         },
         "spec.mounts[0].target: \"tmp\" must be an absolute path"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kTmpfs, "", "", false, 0}};
         },
         "spec.mounts[0].target: is required"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kTmpfs, "", "/", false, 0}};
         },
         "spec.mounts[0].target: must not be /"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kTmpfs, "", "/../etc", false, 0}};
         },
         "spec.mounts[0].target: \"/../etc\" must not contain \"..\""},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kBind, "", "/c", false, 0}};
         },
         "spec.mounts[0].source: is required for a bind mount"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kBind, "host", "/c", false, 0}};
         },
         "spec.mounts[0].source: \"host\" must be an absolute path"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kBind, "/host", "/c", false, 1024}};
         },
         "spec.mounts[0].size: applies to tmpfs mounts only"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kTmpfs, "/host", "/c", false, 0}};
         },
         "spec.mounts[0].source: must not be set for a tmpfs mount"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kTmpfs, "", "/c", false, -1}};
         },
         "spec.mounts[0].size: must not be negative"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kTmpfs, "", "/c", false, int64_t{2} << 40}};
         },
         "spec.mounts[0].size: must be at most 1Ti"},
        {[](WorkloadSpec& s) {
           s.mounts = {MountSpec{MountSpec::Type::kTmpfs, "", "/c", false, 0},
                       MountSpec{MountSpec::Type::kBind, "/h", "/c", false, 0}};
         },
         "spec.mounts[1].target: duplicates spec.mounts[0]"},
        {[](WorkloadSpec& s) { s.resources.memory_bytes = -1; },
         "spec.resources.memory: must not be negative"},
        {[](WorkloadSpec& s) { s.resources.memory_bytes = (int64_t{1} << 40) + 1; },
         "spec.resources.memory: must be at most 1Ti"},
        {[](WorkloadSpec& s) { s.resources.cpu_millis = -500; },
         "spec.resources.cpu: must not be negative"},
        {[](WorkloadSpec& s) { s.resources.cpu_millis = 1024001; },
         "spec.resources.cpu: must be at most 1024"},
        {[](WorkloadSpec& s) { s.resources.pids = -1; },
         "spec.resources.pids: must not be negative"},
        {[](WorkloadSpec& s) { s.resources.pids = 4194305; },
         "spec.resources.pids: must be at most 4194304"},
        {[](WorkloadSpec& s) { s.backoff.initial_ms = 0; },
         "spec.backoff.initial: must be positive"},
        {[](WorkloadSpec& s) { s.backoff.initial_ms = 25 * 3600 * 1000; },
         "spec.backoff.initial: must be at most 24h"},
        {[](WorkloadSpec& s) {
           s.backoff = {60000, 1000, 0};
         },
         "spec.backoff.max: must not be less than initial (1m)"},
        {[](WorkloadSpec& s) { s.backoff.max_ms = 25 * 3600 * 1000; },
         "spec.backoff.max: must be at most 24h"},
        {[](WorkloadSpec& s) { s.backoff.reset_after_ms = -1; },
         "spec.backoff.resetAfter: must not be negative"},
        {[](WorkloadSpec& s) { s.termination_grace_ms = -1; },
         "spec.terminationGracePeriod: must not be negative"},
        {[](WorkloadSpec& s) { s.termination_grace_ms = 7200000; },
         "spec.terminationGracePeriod: must be at most 1h"},
        // Field order decides which of several errors is reported.
        {[](WorkloadSpec& s) {
           s.replicas = -1;
           s.name = "";
         },
         "metadata.name: is required"},
    };
    for (size_t i = 0; i < std::size(cases); i++) {
      CAPTURE(i);
      std::string got = CheckAfter(cases[i].mutate);
      std::string want = cases[i].want;
      CAPTURE(got);
      // A trailing '*' pins only the start of a long message.
      if (want.back() == '*') {
        want.pop_back();
        CHECK(got.substr(0, want.size()) == want);
      } else {
        CHECK(got == want);
      }
    }
  }

  TEST_CASE("ValidateWorkload is CheckWorkload as a Status") {
    CHECK(ValidateWorkload(ValidSpec()).ok());
    WorkloadSpec s = ValidSpec();
    s.resources.memory_bytes = -1;
    Status st = ValidateWorkload(s);
    CHECK(st.IsInvalidArgument());
    CHECK(st.message() == "spec.resources.memory: must not be negative");
  }

  TEST_CASE("ValidateLabel: what workloads' and nodes' labels may be") {
    CHECK(ValidateLabel("zone", "north").ok());
    CHECK(ValidateLabel("petrel.dev/disk", "").ok());
    CHECK(ValidateLabel("a_b.c-d", "A.1_b-2").ok());
    Status s = ValidateLabel("bad key", "x");
    CHECK(s.IsInvalidArgument());
    CHECK(s.message() ==
          "\"bad key\" is not a label key ([prefix/]name; name is at most 63 of [A-Za-z0-9-_.], "
          "alphanumeric at both ends)");
    CHECK(!ValidateLabel("", "x").ok());
    CHECK(!ValidateLabel(std::string(64, 'k'), "x").ok());
    s = ValidateLabel("zone", "-north");
    CHECK(s.message() ==
          "\"-north\" is not a label value (at most 63 of [A-Za-z0-9-_.], alphanumeric at both "
          "ends)");
    CHECK(!ValidateLabel("zone", "a=b").ok());
  }

  TEST_CASE("ValidateNodeName: what node names may be") {
    for (const char* name : {"n1", "gw-1.lab", "0", "A-b.C"}) {
      CAPTURE(name);
      CHECK(ValidateNodeName(name).ok());
    }
    CHECK(ValidateNodeName(std::string(63, 'n')).ok());
    for (std::string name : {std::string(""), std::string("-n"), std::string(".n"),
                             std::string("n_1"), std::string("n 1"), std::string(64, 'n')}) {
      CAPTURE(name);
      Status s = ValidateNodeName(name);
      CHECK(s.IsInvalidArgument());
    }
    CHECK(ValidateNodeName("bad_node").message() ==
          "\"bad_node\" is not a node name (1 to 63 letters, digits, '.' or '-', starting with a "
          "letter or digit)");
  }

  TEST_CASE("placement fields leave the JSON and TemplateHash of older specs as they were") {
    // Both pinned from petrel before the placement fields existed: stored rows and
    // running containers of an upgraded node see no change.
    CHECK(SpecToJson(FullSpec()) ==
          "{\"args\":[\"echo \\\"hi\\\"\\n; sleep 1\",\"\"],"
          "\"backoff\":{\"initialMs\":500,\"maxMs\":60000,\"resetAfterMs\":120000},"
          "\"command\":[\"/bin/sh\",\"-c\"],"
          "\"env\":{\"EMPTY\":\"\",\"MODE\":\"prod\",\"UNICODE\":\"gr\xc3\xbc\xc3\x9f\"},"
          "\"image\":\"oci-archive:/opt/images/busybox.tar\","
          "\"labels\":{\"app\":\"web\",\"example.com/tier\":\"front\"},"
          "\"mounts\":[{\"readOnly\":false,\"sizeBytes\":16777216,\"source\":\"\","
          "\"target\":\"/tmp\",\"type\":\"tmpfs\"},{\"readOnly\":true,\"sizeBytes\":0,"
          "\"source\":\"/var/lib/web\",\"target\":\"/data\",\"type\":\"bind\"}],"
          "\"name\":\"web\",\"ports\":[{\"containerPort\":80,\"hostPort\":8080,"
          "\"protocol\":\"tcp\"},{\"containerPort\":53,\"hostPort\":0,\"protocol\":\"udp\"}],"
          "\"readOnlyRootfs\":true,\"replicas\":3,"
          "\"resources\":{\"cpuMillis\":500,\"memoryBytes\":67108864,\"pids\":64},"
          "\"restartPolicy\":\"OnFailure\",\"terminationGraceMs\":5000,"
          "\"user\":\"1000:1000\",\"workingDir\":\"/srv\"}");
    CHECK(TemplateHash(FullSpec()) == "46408325aa968805");

    // Set, they are written (sorted in among the rest) and read back.
    WorkloadSpec placed = ValidSpec();
    placed.node_selector = {{"zone", "north"}};
    placed.preferred_nodes = {"gw-2", "gw-1"};
    placed.exclusive = true;
    placed.standby = "warm";
    placed.standby_replicas = 1;
    CHECK(SpecToJson(placed) ==
          "{\"args\":[],\"backoff\":{\"initialMs\":1000,\"maxMs\":300000,\"resetAfterMs\":0},"
          "\"command\":[],\"env\":{},\"exclusive\":true,"
          "\"image\":\"oci-archive:/opt/images/busybox.tar\",\"labels\":{},\"mounts\":[],"
          "\"name\":\"web\",\"nodeSelector\":{\"zone\":\"north\"},\"ports\":[],"
          "\"preferredNodes\":[\"gw-2\",\"gw-1\"],\"readOnlyRootfs\":false,\"replicas\":1,"
          "\"resources\":{\"cpuMillis\":0,\"memoryBytes\":0,\"pids\":0},"
          "\"restartPolicy\":\"Always\",\"standby\":\"warm\",\"standbyReplicas\":1,"
          "\"terminationGraceMs\":10000,"
          "\"user\":\"\",\"workingDir\":\"\"}");
    CHECK(TemplateHash(placed) == TemplateHash(ValidSpec()));

    // Each alone is written alone; the others stay out.
    WorkloadSpec one = ValidSpec();
    one.standby = "warm";
    std::string json = SpecToJson(one);
    CHECK(json.find("\"standby\":\"warm\"") != std::string::npos);
    for (const char* key : {"nodeSelector", "preferredNodes", "exclusive"}) {
      CAPTURE(key);
      CHECK(json.find(key) == std::string::npos);
    }

    // Written at their defaults (by hand: SpecToJson never does), they read as absent.
    std::string min = SpecToJson(ValidSpec());
    std::string explicit_defaults =
        min.substr(0, min.size() - 1) +
        ",\"nodeSelector\":{},\"preferredNodes\":[],\"exclusive\":false,\"standby\":\"\"}";
    Result<WorkloadSpec> back = SpecFromJson(explicit_defaults);
    REQUIRE_MESSAGE(back.ok(), back.status().message());
    CHECK(*back == ValidSpec());
    CHECK(SpecToJson(*back) == min);
  }

  // Issue 9: securityContext, like the placement fields, is in the JSON and the hash
  // only when set, so a container made by an older petrel is not replaced on upgrade.
  TEST_CASE("imagePullPolicy: left out at its default, kept in the JSON, not in TemplateHash") {
    WorkloadSpec full = FullSpec();
    CHECK(SpecToJson(full).find("imagePullPolicy") == std::string::npos);
    for (PullPolicy p : {PullPolicy::kAlways, PullPolicy::kNever}) {
      WorkloadSpec s = full;
      s.image_pull_policy = p;
      const std::string json = SpecToJson(s);
      CHECK(json.find(std::string("\"imagePullPolicy\":\"") + PullPolicyName(p) + "\"") !=
            std::string::npos);
      CHECK(TemplateHash(s) == TemplateHash(full));  // changing it replaces no container
      Result<WorkloadSpec> back = SpecFromJson(json);
      REQUIRE_MESSAGE(back.ok(), back.status().message());
      CHECK(*back == s);
    }
    std::string bad = SpecToJson(full);
    bad.insert(1, "\"imagePullPolicy\":\"Sometimes\",");
    CHECK(SpecFromJson(bad).status().message() ==
          "spec JSON: imagePullPolicy: \"Sometimes\" is not IfNotPresent, Always or Never");
    CHECK(ParsePullPolicy("IfNotPresent") == PullPolicy::kIfNotPresent);
    CHECK(!ParsePullPolicy("always"));
  }

  TEST_CASE("network and hostIP: left out at their defaults, in the JSON and TemplateHash") {
    WorkloadSpec full = FullSpec();
    CHECK(full.network == NetworkMode::kBridge);
    CHECK(SpecToJson(full).find("network") == std::string::npos);
    CHECK(SpecToJson(full).find("hostIP") == std::string::npos);
    CHECK(TemplateHash(full) == "46408325aa968805");  // as before the fields existed
    for (NetworkMode m : {NetworkMode::kHost, NetworkMode::kNone}) {
      WorkloadSpec s = ValidSpec();
      s.network = m;
      const std::string json = SpecToJson(s);
      CHECK(json.find(std::string("\"network\":\"") + NetworkModeName(m) + "\"") !=
            std::string::npos);
      CHECK(TemplateHash(s) != TemplateHash(ValidSpec()));  // a new container
      Result<WorkloadSpec> back = SpecFromJson(json);
      REQUIRE_MESSAGE(back.ok(), back.status().message());
      CHECK(*back == s);
    }
    WorkloadSpec published = ValidSpec();
    published.ports = {{80, 8080, "tcp", "127.0.0.1"}};
    CHECK(SpecToJson(published).find("\"hostIP\":\"127.0.0.1\"") != std::string::npos);
    WorkloadSpec everywhere = published;
    everywhere.ports[0].host_ip = "";
    CHECK(TemplateHash(published) != TemplateHash(everywhere));
    Result<WorkloadSpec> back = SpecFromJson(SpecToJson(published));
    REQUIRE_MESSAGE(back.ok(), back.status().message());
    CHECK(*back == published);
    std::string bad = SpecToJson(full);
    bad.insert(1, "\"network\":\"overlay\",");
    CHECK(SpecFromJson(bad).status().message() ==
          "spec JSON: network: \"overlay\" is not bridge, host or none");
    CHECK(ParseNetworkMode("none") == NetworkMode::kNone);
    CHECK(!ParseNetworkMode("Bridge"));
  }

  TEST_CASE("FormatPullProgress: sizes in MiB and layers once known") {
    PullProgress p;
    p.phase = "resolving";
    CHECK(FormatPullProgress(p) == "resolving");
    p.phase = "downloading";
    p.bytes_done = 12 * 1048576 + 314573;
    p.bytes_total = 45 * 1048576 + 629146;
    p.layers_done = 2;
    p.layers_total = 5;
    CHECK(FormatPullProgress(p) == "downloading 12.3 of 45.6 MiB, 2/5 layers");
  }

  TEST_CASE("securityContext at its default leaves the JSON and TemplateHash as they were") {
    WorkloadSpec full = FullSpec();
    full.security_context = SecurityContext{};
    CHECK(SpecToJson(full).find("securityContext") == std::string::npos);
    CHECK(TemplateHash(full) == "46408325aa968805");
    CHECK(TemplateHash(ValidSpec()) == "ea70ca5139747a21");

    WorkloadSpec secured = ValidSpec();
    secured.security_context.capabilities_add = {"NET_ADMIN"};
    secured.security_context.capabilities_drop = {"ALL"};
    const std::string json = SpecToJson(secured);
    CHECK(json.find("\"securityContext\":{\"capabilities\":{\"add\":[\"NET_ADMIN\"],"
                    "\"drop\":[\"ALL\"]},\"privileged\":false,"
                    "\"seccompProfile\":{\"type\":\"RuntimeDefault\"}}") != std::string::npos);
    CHECK(TemplateHash(secured) != TemplateHash(ValidSpec()));
    for (auto change : std::initializer_list<std::function<void(SecurityContext&)>>{
             [](SecurityContext&) {}, [](SecurityContext& c) { c.privileged = true; },
             [](SecurityContext& c) { c.seccomp = SecurityContext::Seccomp::kUnconfined; }}) {
      WorkloadSpec s = secured;
      change(s.security_context);
      Result<WorkloadSpec> back = SpecFromJson(SpecToJson(s));
      REQUIRE_MESSAGE(back.ok(), back.status().message());
      CHECK(*back == s);
    }

    struct {
      std::string from, to, want;
    } bad[] = {
        {"\"privileged\":false", "\"privileged\":0",
         "spec JSON: securityContext.privileged: must be a boolean"},
        {"\"RuntimeDefault\"", "\"Localhost\"",
         "spec JSON: securityContext.seccompProfile.type: \"Localhost\" is not RuntimeDefault "
         "or Unconfined"},
        {"\"drop\":[\"ALL\"]", "\"drop\":[\"ALL\"],\"keep\":[]",
         "spec JSON: securityContext.capabilities.keep: unknown field"},
        {"\"add\":[\"NET_ADMIN\"]", "\"add\":\"NET_ADMIN\"",
         "spec JSON: securityContext.capabilities.add: must be an array"},
    };
    for (const auto& c : bad) {
      std::string text = json;
      const size_t at = text.find(c.from);
      REQUIRE(at != std::string::npos);
      text.replace(at, c.from.size(), c.to);
      CAPTURE(text);
      Result<WorkloadSpec> r = SpecFromJson(text);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().message() == c.want);
    }
  }

  TEST_CASE(
      "CheckWorkload: securityContext capabilities are known names, not both added and dropped") {
    CHECK(CheckAfter([](WorkloadSpec& s) {
            s.security_context.capabilities_add = {"NET_ADMIN", "CAP_SYS_TIME", "ALL"};
            s.security_context.capabilities_drop = {"ALL", "net_raw"};
          }) ==
          "spec.securityContext.capabilities.drop[1]: \"net_raw\" is not a capability (want one "
          "such as NET_ADMIN, or ALL)");
    CHECK(CheckAfter([](WorkloadSpec& s) {
            s.security_context.capabilities_add = {"NET_ADMIN", "CAP_SYS_TIME", "BPF"};
            s.security_context.capabilities_drop = {"ALL", "NET_RAW", "CAP_CHECKPOINT_RESTORE"};
            s.security_context.seccomp = SecurityContext::Seccomp::kUnconfined;
          }) == "");
    CHECK(CheckAfter([](WorkloadSpec& s) {
            s.security_context.capabilities_add = {"NET_ADMIN", "CAP_NET_FOO"};
          }) ==
          "spec.securityContext.capabilities.add[1]: \"CAP_NET_FOO\" is not a capability (want "
          "one such as NET_ADMIN, or ALL)");
    CHECK(CheckAfter([](WorkloadSpec& s) { s.security_context.capabilities_add = {""}; }) ==
          "spec.securityContext.capabilities.add[0]: \"\" is not a capability (want one such as "
          "NET_ADMIN, or ALL)");
    CHECK(CheckAfter([](WorkloadSpec& s) {
            s.security_context.capabilities_add = {"SYS_TIME", "NET_RAW"};
            s.security_context.capabilities_drop = {"CAP_NET_RAW"};
          }) ==
          "spec.securityContext.capabilities.drop[0]: \"CAP_NET_RAW\" is also in "
          "spec.securityContext.capabilities.add[1]");
    CHECK(std::size(internal::kCapabilities) == 41);  // CAP_LAST_CAP of Linux 5.9 to 6.x
  }

  TEST_CASE("SpecToJson is canonical and SpecFromJson reads it back") {
    WorkloadSpec min = ValidSpec();
    CHECK(SpecToJson(min) ==
          "{\"args\":[],\"backoff\":{\"initialMs\":1000,\"maxMs\":300000,\"resetAfterMs\":0},"
          "\"command\":[],\"env\":{},\"image\":\"oci-archive:/opt/images/busybox.tar\","
          "\"labels\":{},\"mounts\":[],\"name\":\"web\",\"ports\":[],\"readOnlyRootfs\":false,"
          "\"replicas\":1,\"resources\":{\"cpuMillis\":0,\"memoryBytes\":0,\"pids\":0},"
          "\"restartPolicy\":\"Always\",\"terminationGraceMs\":10000,\"user\":\"\","
          "\"workingDir\":\"\"}");
    for (const WorkloadSpec& s : {min, FullSpec(), PlacedSpec(), WorkloadSpec()}) {
      std::string json = SpecToJson(s);
      CAPTURE(json);
      Result<WorkloadSpec> back = SpecFromJson(json);
      REQUIRE(back.ok());
      CHECK(*back == s);
      CHECK(SpecToJson(*back) == json);
    }
  }

  TEST_CASE("SpecFromJson rejects anything else with a clear error") {
    std::string good = SpecToJson(FullSpec());
    auto replace = [&](const std::string& from, const std::string& to) {
      std::string s = good;
      size_t at = s.find(from);
      REQUIRE(at != std::string::npos);
      return s.replace(at, from.size(), to);
    };
    struct {
      std::string json;
      std::string want;
    } cases[] = {
        {"[]", "spec JSON: (top): must be an object"},
        {replace("\"replicas\":3,", ""), "spec JSON: replicas: is missing"},
        {replace("\"replicas\":3", "\"replicas\":3,\"bogus\":1"),
         "spec JSON: bogus: unknown field"},
        {replace("\"replicas\":3", "\"replicas\":\"3\""),
         "spec JSON: replicas: must be an integer"},
        {replace("\"replicas\":3", "\"replicas\":3.5"), "spec JSON: replicas: must be an integer"},
        {replace("\"replicas\":3", "\"replicas\":4294967296"),
         "spec JSON: replicas: is out of range"},
        {replace("\"pids\":64", "\"pids\":18446744073709551615"),
         "spec JSON: resources.pids: is out of range"},
        {replace("\"OnFailure\"", "\"Sometimes\""),
         "spec JSON: restartPolicy: \"Sometimes\" is not Always, OnFailure or Never"},
        {replace("\"tmpfs\"", "\"nfs\""),
         "spec JSON: mounts[0].type: \"nfs\" is not bind or tmpfs"},
        {replace(",\"protocol\":\"tcp\"", ""), "spec JSON: ports[0].protocol: is missing"},
        {replace("\"readOnlyRootfs\":true", "\"readOnlyRootfs\":1"),
         "spec JSON: readOnlyRootfs: must be a boolean"},
        {replace("\"MODE\":\"prod\"", "\"MODE\":null"), "spec JSON: env.MODE: must be a string"},
        {replace("\"args\":[", "\"args\":[1,"), "spec JSON: args[0]: must be a string"},
        {replace("{\"app\":\"web\",\"example.com/tier\":\"front\"}", "[]"),
         "spec JSON: labels: must be an object"},
        // The placement fields, present only when set.
        {replace("\"replicas\":3", "\"replicas\":3,\"nodeSelector\":[]"),
         "spec JSON: nodeSelector: must be an object"},
        {replace("\"replicas\":3", "\"replicas\":3,\"nodeSelector\":{\"zone\":1}"),
         "spec JSON: nodeSelector.zone: must be a string"},
        {replace("\"replicas\":3", "\"replicas\":3,\"preferredNodes\":\"gw-1\""),
         "spec JSON: preferredNodes: must be an array"},
        {replace("\"replicas\":3", "\"replicas\":3,\"preferredNodes\":[\"gw-1\",2]"),
         "spec JSON: preferredNodes[1]: must be a string"},
        {replace("\"replicas\":3", "\"replicas\":3,\"exclusive\":\"true\""),
         "spec JSON: exclusive: must be a boolean"},
        {replace("\"replicas\":3", "\"replicas\":3,\"standby\":true"),
         "spec JSON: standby: must be a string"},
        {replace("\"replicas\":3", "\"replicas\":3,\"standby\":\"warm\",\"Standby\":\"warm\""),
         "spec JSON: Standby: unknown field"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.json);
      Result<WorkloadSpec> r = SpecFromJson(c.json);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().IsInvalidArgument());
      CHECK(r.status().message() == c.want);
    }
    for (std::string bad :
         {std::string(""), std::string("{"), std::string("nul"), good + "x",
          std::string("{\"a\":\"\xff\"}"), std::string(100000, '[') + std::string(100000, ']')}) {
      Result<WorkloadSpec> r = SpecFromJson(bad);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().message().substr(0, 11) == "spec JSON: ");
    }
  }

  TEST_CASE("TemplateHash covers what goes into the container, nothing else") {
    WorkloadSpec base = FullSpec();
    std::string h = TemplateHash(base);
    CHECK(h.size() == 16);
    CHECK(h.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(TemplateHash(FullSpec()) == h);
    // Pinned: a change of the hash's input replaces every container on upgrade. A
    // field added to WorkloadSpec must leave both as they are while it is at its
    // default (see TemplateJson).
    CHECK(TemplateHash(ValidSpec()) == "ea70ca5139747a21");
    CHECK(TemplateHash(FullSpec()) == "46408325aa968805");

    std::function<void(WorkloadSpec&)> ignored[] = {
        [](WorkloadSpec& s) { s.name = "other"; },
        [](WorkloadSpec& s) { s.replicas = 7; },
        [](WorkloadSpec& s) { s.restart_policy = RestartPolicy::kNever; },
        [](WorkloadSpec& s) {
          s.backoff = {1, 2, 3};
        },
        [](WorkloadSpec& s) { s.termination_grace_ms = 1; },
        // Placement decides where a replica runs, not what it is.
        [](WorkloadSpec& s) { s.node_selector["zone"] = "north"; },
        [](WorkloadSpec& s) {
          s.preferred_nodes = {"gw-1", "gw-2"};
        },
        [](WorkloadSpec& s) { s.exclusive = true; },
        [](WorkloadSpec& s) { s.standby = "warm"; },
        [](WorkloadSpec& s) {
          s = PlacedSpec();
          s.replicas = 3;
        },
    };
    for (size_t i = 0; i < std::size(ignored); i++) {
      CAPTURE(i);
      WorkloadSpec s = base;
      ignored[i](s);
      CHECK(TemplateHash(s) == h);
    }
    std::function<void(WorkloadSpec&)> covered[] = {
        [](WorkloadSpec& s) { s.image = "oci:/x"; },
        [](WorkloadSpec& s) { s.env["MODE"] = "dev"; },
        [](WorkloadSpec& s) { s.command[0] = "/bin/ash"; },
        [](WorkloadSpec& s) { s.args.pop_back(); },
        [](WorkloadSpec& s) { s.labels["app"] = "web2"; },
        [](WorkloadSpec& s) { s.working_dir = "/"; },
        [](WorkloadSpec& s) { s.user = "0"; },
        [](WorkloadSpec& s) { s.read_only_rootfs = false; },
        [](WorkloadSpec& s) { s.ports[0].host_port = 8081; },
        [](WorkloadSpec& s) { s.mounts[0].size_bytes = 1; },
        [](WorkloadSpec& s) { s.resources.memory_bytes = 1; },
        [](WorkloadSpec& s) { s.resources.cpu_millis = 1; },
        [](WorkloadSpec& s) { s.security_context.privileged = true; },
        [](WorkloadSpec& s) { s.security_context.capabilities_add = {"NET_ADMIN"}; },
        [](WorkloadSpec& s) { s.security_context.capabilities_drop = {"NET_RAW"}; },
        [](WorkloadSpec& s) { s.security_context.seccomp = SecurityContext::Seccomp::kUnconfined; },
    };
    for (size_t i = 0; i < std::size(covered); i++) {
      CAPTURE(i);
      WorkloadSpec s = base;
      covered[i](s);
      CHECK(TemplateHash(s) != h);
    }
  }

  // Issue 9: --allow-host-path / Options::allowed_host_paths.
  TEST_CASE("CheckHostPaths: a bind mount's source below an allowed directory, links resolved") {
    testing::TempDir dir;
    const std::string data = dir.Sub("data");
    std::filesystem::create_directories(data + "/sub");
    std::filesystem::create_symlink("/etc", data + "/escape");
    std::filesystem::create_symlink(data, dir.Sub("link-to-data"));
    auto check = [&](const std::string& source, const std::vector<std::string>& allowed) {
      WorkloadSpec s = ValidSpec();
      MountSpec tmpfs;
      tmpfs.type = MountSpec::Type::kTmpfs;
      tmpfs.target = "/tmp";
      s.mounts.push_back(tmpfs);  // no host path: never refused
      MountSpec bind;
      bind.source = source;
      bind.target = "/data";
      s.mounts.push_back(bind);
      Status st = CheckHostPaths(s, allowed);
      return st.ok() ? std::string() : st.message();
    };
    const std::vector<std::string> allowed = {data, "/opt/app/"};
    for (const std::string& ok :
         std::vector<std::string>{data, data + "/sub", data + "/not/yet/made", data + "/",
                                  "/opt/app", "/opt/app/x", dir.Sub("link-to-data/sub")}) {
      CAPTURE(ok);
      CHECK(check(ok, allowed) == "");
    }
    CHECK(check("/etc", {}) == "");  // none given: any path
    CHECK(check("/etc", {"/"}) == "");
    CHECK(check("/etc", allowed) ==
          "spec.mounts[1].source: \"/etc\" is not below an allowed "
          "host path (" +
              data + ", /opt/app/)");
    CHECK(check(data + "x", allowed).find("is not below an allowed host path") !=
          std::string::npos);
    CHECK(check("/opt/application", allowed) != "");
    CHECK(check("/", allowed) != "");
    CHECK(check(data + "/escape/passwd", allowed) ==
          "spec.mounts[1].source: \"" + data + "/escape/passwd\" is not below an allowed host " +
              "path (" + data + ", /opt/app/); it resolves to \"/etc/passwd\"");
    // An allowed directory given through a link: what it leads to is allowed.
    CHECK(check(data + "/sub", {dir.Sub("link-to-data")}) == "");
  }

}  // TEST_SUITE

}  // namespace
}  // namespace petrel
