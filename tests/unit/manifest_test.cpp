// Tests of lib/manifest: YAML and JSON manifests, error positions, directories.
#include "petrel/manifest.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/lib/files.h"

namespace petrel {
namespace {

using testing::WriteFile;

// The repository's examples/manifests, found from this file's path.
std::string ExamplesDir() {
  std::string here = __FILE__;
  return here.substr(0, here.rfind("/tests/unit/")) + "/examples/manifests";
}

// The error message of parsing `text` as "m.yaml", or "ok" with the names parsed.
std::string Parse(const std::string& text) {
  Result<std::vector<WorkloadSpec>> r = ParseManifest(text, "m.yaml");
  if (!r.ok()) {
    CHECK(r.status().IsInvalidArgument());
    return r.status().message();
  }
  std::string names = "ok";
  for (const WorkloadSpec& s : *r) names += " " + s.name;
  return names;
}

constexpr const char* kHeader =
    "apiVersion: petrel.dev/v1\n"
    "kind: Workload\n"
    "metadata:\n"
    "  name: web\n"
    "spec:\n"
    "  image: oci-archive:/opt/images/busybox.tar\n";

// kHeader with `more` appended: the first appended line is line 7.
std::string With(const std::string& more) { return kHeader + more; }

TEST_SUITE("manifest") {
  TEST_CASE("a full manifest decodes every field") {
    const char* text = R"(apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  image: oci-archive:/opt/images/busybox.tar   # also oci:DIR, docker-archive:FILE
  command: ["/bin/sh", "-c"]
  args: ["echo hi; sleep 3600"]
  env: {MODE: prod, PORT: 8080, EMPTY: ~}
  network: host
  ports: [{containerPort: 80, hostPort: 80}, {containerPort: 53, protocol: UDP}]
  mounts: [{type: tmpfs, target: /tmp, size: 16Mi}, {type: bind, source: /host, target: /c, readOnly: true}]
  resources: {memory: 64Mi, cpu: 500m, pids: 64}
  restartPolicy: OnFailure
  imagePullPolicy: Always
  backoff: {initial: 1s, max: 5m, resetAfter: 10m}
  workingDir: /srv
  user: 1000:1000
  readOnlyRootfs: true
  terminationGracePeriod: 30s
)";
    Result<std::vector<WorkloadSpec>> r = ParseManifest(text, "web.yaml");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    REQUIRE(r->size() == 1);
    const WorkloadSpec& s = (*r)[0];
    CHECK(s.name == "web");
    CHECK(s.labels == std::map<std::string, std::string>{{"app", "web"}});
    CHECK(s.replicas == 2);
    CHECK(s.image == "oci-archive:/opt/images/busybox.tar");
    CHECK(s.image_pull_policy == PullPolicy::kAlways);
    CHECK(s.command == std::vector<std::string>{"/bin/sh", "-c"});
    CHECK(s.args == std::vector<std::string>{"echo hi; sleep 3600"});
    CHECK(s.env ==
          std::map<std::string, std::string>{{"MODE", "prod"}, {"PORT", "8080"}, {"EMPTY", ""}});
    REQUIRE(s.ports.size() == 2);
    CHECK(s.network == NetworkMode::kHost);
    CHECK(s.ports[0] == PortSpec{80, 80, "tcp", ""});
    CHECK(s.ports[1] == PortSpec{53, 0, "udp", ""});
    REQUIRE(s.mounts.size() == 2);
    CHECK(s.mounts[0] == MountSpec{MountSpec::Type::kTmpfs, "", "/tmp", false, 16 << 20});
    CHECK(s.mounts[1] == MountSpec{MountSpec::Type::kBind, "/host", "/c", true, 0});
    CHECK(s.resources == Resources{64 << 20, 500, 64});
    CHECK(s.restart_policy == RestartPolicy::kOnFailure);
    CHECK(s.backoff == Backoff{1000, 300000, 600000});
    CHECK(s.working_dir == "/srv");
    CHECK(s.user == "1000:1000");
    CHECK(s.read_only_rootfs);
    CHECK(s.termination_grace_ms == 30000);
  }

  TEST_CASE("absent and null fields keep their defaults") {
    Result<std::vector<WorkloadSpec>> r = ParseManifest(
        With("  workingDir:\n  command: ~\n  resources:\n  backoff: null\n"), "m.yaml");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    WorkloadSpec want;
    want.name = "web";
    want.image = "oci-archive:/opt/images/busybox.tar";
    CHECK((*r)[0] == want);
  }

  TEST_CASE("errors name file, line, column and field path") {
    struct {
      std::string text;
      const char* want;
    } cases[] = {
        // Unknown fields point at the key.
        {With("  replica: 2\n"), "m.yaml:7:3: spec.replica: unknown field"},
        {With("  resources:\n    memroy: 64Mi\n"),
         "m.yaml:8:5: spec.resources.memroy: unknown field"},
        {"apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: web, namespace: x}\n",
         "m.yaml:3:23: metadata.namespace: unknown field"},
        {With("status: {}\n"), "m.yaml:7:1: status: unknown field"},
        {With("  ports:\n    - containerPort: 80\n      port: 80\n"),
         "m.yaml:9:7: spec.ports[0].port: unknown field"},
        // Wrong types point at the value.
        {With("  replicas: two\n"), "m.yaml:7:13: spec.replicas: \"two\" is not an integer"},
        {With("  replicas: 1.5\n"), "m.yaml:7:13: spec.replicas: \"1.5\" is not an integer"},
        {With("  replicas: 99999999999\n"),
         "m.yaml:7:13: spec.replicas: \"99999999999\" is out of range"},
        {With("  command: echo hi\n"),
         "m.yaml:7:12: spec.command: must be a list, not \"echo hi\""},
        {With("  command: [a, [b]]\n"),
         "m.yaml:7:16: spec.command[1]: must be a string, not a list"},
        {With("  command: [a, ~]\n"), "m.yaml:7:16: spec.command[1]: must be a string, not null"},
        {With("  env: [A]\n"), "m.yaml:7:8: spec.env: must be a mapping, not a list"},
        {With("  env: {A: {b: c}}\n"), "m.yaml:7:12: spec.env.A: must be a string, not a mapping"},
        {With("  readOnlyRootfs: yes\n"),
         "m.yaml:7:19: spec.readOnlyRootfs: \"yes\" is not a boolean (true or false)"},
        {With("  ports: {containerPort: 80}\n"),
         "m.yaml:7:10: spec.ports: must be a list, not a mapping"},
        {With("  ports: [80]\n"), "m.yaml:7:11: spec.ports[0]: must be a mapping, not \"80\""},
        {"apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: web\n",
         "m.yaml:3:11: metadata: must be a mapping, not \"web\""},
        {With("  restartPolicy: Sometimes\n"),
         "m.yaml:7:18: spec.restartPolicy: \"Sometimes\" is not a restart policy (want Always, "
         "OnFailure or Never)"},
        {With("  network: overlay\n"),
         "m.yaml:7:12: spec.network: \"overlay\" is not a network (want bridge, host or none)"},
        {With("  ports: [{containerPort: 80, hostPort: 8080, hostIP: [1]}]\n"),
         "m.yaml:7:55: spec.ports[0].hostIP: must be a string, not a list"},
        {With("  ports: [{containerPort: 80, hostPort: 8080, hostIP: \"::1\"}]\n"),
         "m.yaml:7:55: spec.ports[0].hostIP: \"::1\" is not an IPv4 address (IPv6 is not "
         "published)"},
        {With("  imagePullPolicy: Sometimes\n"),
         "m.yaml:7:20: spec.imagePullPolicy: \"Sometimes\" is not an image pull policy (want "
         "IfNotPresent, Always or Never)"},
        {With("  mounts: [{type: volume, target: /x}]\n"),
         "m.yaml:7:19: spec.mounts[0].type: \"volume\" is not a mount type (want bind or tmpfs)"},
        // Quantities and durations.
        {With("  resources:\n    memory: 64Q\n"),
         "m.yaml:8:13: spec.resources.memory: \"64Q\" is not a quantity"},
        {With("  resources: {cpu: -1}\n"),
         "m.yaml:7:20: spec.resources.cpu: \"-1\" must not be negative"},
        {With("  mounts:\n  - type: tmpfs\n    target: /tmp\n    size: lots\n"),
         "m.yaml:10:11: spec.mounts[0].size: \"lots\" is not a quantity"},
        {With("  backoff: {initial: 1s, max: 5}\n"),
         "m.yaml:7:31: spec.backoff.max: \"5\" is not a duration (e.g. 500ms, 10s, 1m30s)"},
        {With("  terminationGracePeriod: 1y\n"),
         "m.yaml:7:27: spec.terminationGracePeriod: \"1y\" is not a duration (e.g. 500ms, 10s, "
         "1m30s)"},
        // Validation errors point at the value that fails.
        {"apiVersion: petrel.dev/v1\nkind: Workload\nmetadata:\n  name: Web_1\n",
         "m.yaml:4:9: metadata.name: \"Web_1\" is not a DNS-1123 label (lowercase letters, digits "
         "and '-', starting and ending with a letter or digit, at most 63)"},
        {With("  replicas: 20000\n"), "m.yaml:7:13: spec.replicas: must be at most 10000"},
        {With("  resources: {memory: 2Ti}\n"),
         "m.yaml:7:23: spec.resources.memory: must be at most 1Ti"},
        {With("  ports:\n  - containerPort: 80\n  - containerPort: 80\n"),
         "m.yaml:9:20: spec.ports[1].containerPort: duplicates spec.ports[0]"},
        {With("  ports:\n  - containerPort: 0\n"),
         "m.yaml:8:20: spec.ports[0].containerPort: must be between 1 and 65535"},
        {With("  mounts:\n  - {type: tmpfs, target: /a}\n  - {type: tmpfs, target: tmp}\n"),
         "m.yaml:9:27: spec.mounts[1].target: \"tmp\" must be an absolute path"},
        {With("  mounts:\n  - {type: bind, target: /c}\n"),
         "m.yaml:8:5: spec.mounts[0].source: is required for a bind mount"},
        {With("  mounts:\n  - {type: tmpfs, source: /h, target: /c}\n"),
         "m.yaml:8:27: spec.mounts[0].source: must not be set for a tmpfs mount"},
        {With("  env:\n    MY-VAR: x\n"),
         "m.yaml:8:13: spec.env.MY-VAR: \"MY-VAR\" is not an environment variable name "
         "([A-Za-z_][A-Za-z0-9_]*)"},
        {With("  backoff: {initial: 1m, max: 10s}\n"),
         "m.yaml:7:31: spec.backoff.max: must not be less than initial (1m)"},
        // Placement.
        {With("  nodeSelector:\n    zone: -north\n"),
         "m.yaml:8:11: spec.nodeSelector.zone: \"-north\" is not a label value (at most 63 of "
         "[A-Za-z0-9-_.], alphanumeric at both ends)"},
        {With("  nodeSelector: {a/b/c: x}\n"),
         "m.yaml:7:25: spec.nodeSelector.a/b/c: \"a/b/c\" is not a label key ([prefix/]name; "
         "name is at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends)"},
        {With("  nodeSelector: [zone]\n"),
         "m.yaml:7:17: spec.nodeSelector: must be a mapping, not a list"},
        {With("  preferredNodes: [gw-1, gw-2, gw-1]\n"),
         "m.yaml:7:32: spec.preferredNodes[2]: duplicates spec.preferredNodes[0]"},
        {With("  preferredNodes:\n  - gw-1\n  - gw_2\n"),
         "m.yaml:9:5: spec.preferredNodes[1]: \"gw_2\" is not a node name (1 to 63 letters, "
         "digits, '.' or '-', starting with a letter or digit)"},
        {With("  preferredNodes: gw-1\n"),
         "m.yaml:7:19: spec.preferredNodes: must be a list, not \"gw-1\""},
        {With("  replicas: 2\n  exclusive: true\n"),
         "m.yaml:7:13: spec.replicas: must be 0 or 1 when spec.exclusive is true"},
        {With("  exclusive: yes\n"),
         "m.yaml:7:14: spec.exclusive: \"yes\" is not a boolean (true or false)"},
        {With("  standby: hot\n"),
         "m.yaml:7:12: spec.standby: \"hot\" is not a standby mode (want warm, or leave it out)"},
        {With("  standby: [warm]\n"), "m.yaml:7:12: spec.standby: must be a string, not a list"},
        // A missing field points at the mapping that should hold it.
        {"apiVersion: petrel.dev/v1\nkind: Workload\nmetadata:\n  name: web\nspec:\n  replicas: "
         "2\n",
         "m.yaml:6:3: spec.image: is required"},
        {"apiVersion: petrel.dev/v1\nkind: Workload\nmetadata:\n  name: web\n",
         "m.yaml:1:1: spec.image: is required"},
        {"apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {labels: {a: b}}\n",
         "m.yaml:3:11: metadata.name: is required"},
        {"kind: Workload\nmetadata: {name: web}\n", "m.yaml:1:1: apiVersion: is required"},
        {"apiVersion: petrel.dev/v1\nmetadata: {name: web}\n", "m.yaml:1:1: kind: is required"},
        // A field written without a value points at its key.
        {"apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: web}\nspec:\n  image:\n",
         "m.yaml:5:3: spec.image: is required"},
        // Header fields.
        {"apiVersion: v1\nkind: Workload\n",
         "m.yaml:1:13: apiVersion: \"v1\" is not supported (want petrel.dev/v1)"},
        {"apiVersion: petrel.dev/v1\nkind: Deployment\n",
         "m.yaml:2:7: kind: \"Deployment\" is not a supported kind (want Workload)"},
        // Keys.
        {With("  replicas: 1\n  replicas: 2\n"), "m.yaml:8:3: spec.replicas: duplicate key"},
        {With("  env: {A: x, A: y}\n"), "m.yaml:7:15: spec.env.A: duplicate key"},
        {With("  [a]: 1\n"), "m.yaml:7:3: spec: keys must be strings"},
        // Documents.
        {"- just a string\n", "m.yaml:1:3: a document must be a mapping, not \"just a string\""},
        {"hello\n", "m.yaml:1:1: a document must be a mapping, not \"hello\""},
        // YAML syntax.
        {With("  command: [a, b\n"), "m.yaml:8:1: end of sequence flow not found"},
        {With("  env: {A: x\n"), "m.yaml:8:1: end of map flow not found"},
        {"a: b: c\n", "m.yaml:1:5: illegal map value"},
        {With("  image: *nothing\n"), "m.yaml:7:10: the referenced anchor is not defined"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.text);
      CHECK(Parse(c.text) == c.want);
    }
  }

  TEST_CASE("several documents per file, all or nothing") {
    std::string doc2 =
        "apiVersion: petrel.dev/v1\nkind: Workload\nmetadata:\n  name: db\n"
        "spec:\n  image: oci:/images/db\n";
    CHECK(Parse(With("---\n") + doc2) == "ok web db");
    CHECK(Parse("---\n" + With("---\n") + doc2 + "---\n") == "ok web db");
    CHECK(Parse("") == "ok");
    CHECK(Parse("# nothing here\n---\n") == "ok");
    // An error in the second document: nothing at all is returned.
    CHECK(Parse(With("---\n") + doc2 + "  replicas: -1\n") ==
          "m.yaml:14:13: spec.replicas: must not be negative");
    CHECK(Parse(With("---\n") + With("")) ==
          "m.yaml:11:9: metadata.name: duplicate workload name \"web\" (first at line 4)");
    // A top-level sequence of documents.
    CHECK(Parse("- apiVersion: petrel.dev/v1\n  kind: Workload\n  metadata: {name: a}\n"
                "  spec: {image: busybox}\n"
                "- apiVersion: petrel.dev/v1\n  kind: Workload\n  metadata: {name: b}\n"
                "  spec: {image: busybox}\n") == "ok a b");
    // kind: List.
    CHECK(Parse("apiVersion: v1\nkind: List\nmetadata: {}\nitems:\n"
                "- apiVersion: petrel.dev/v1\n  kind: Workload\n  metadata: {name: a}\n"
                "  spec: {image: busybox}\n") == "ok a");
    CHECK(Parse("apiVersion: petrel.dev/v1\nkind: List\nitems: []\n") == "ok");
    CHECK(Parse("apiVersion: petrel.dev/v1\nkind: List\n") == "m.yaml:1:1: items: is required");
    CHECK(Parse("apiVersion: petrel.dev/v1\nkind: List\nitems: {}\n") ==
          "m.yaml:3:8: items: must be a list, not a mapping");
    CHECK(Parse("apiVersion: petrel.dev/v1\nkind: List\nspec: {}\nitems: []\n") ==
          "m.yaml:3:1: spec: unknown field");
    CHECK(
        Parse("apiVersion: petrel.dev/v1\nkind: List\nitems:\n- kind: List\n  apiVersion: v1\n") ==
        "m.yaml:5:15: apiVersion: \"v1\" is not supported (want petrel.dev/v1)");
    CHECK(Parse("apiVersion: petrel.dev/v1\nkind: List\nitems:\n- apiVersion: petrel.dev/v1\n"
                "  kind: List\n  items: []\n") ==
          "m.yaml:5:9: kind: \"List\" is not a supported kind (want Workload)");
  }

  TEST_CASE("JSON manifests read like YAML, positions included") {
    const char* one =
        "{\n"
        "\t\"apiVersion\": \"petrel.dev/v1\",\n"
        "\t\"kind\": \"Workload\",\n"
        "\t\"metadata\": {\"name\": \"web\"},\n"
        "\t\"spec\": {\n"
        "\t\t\"image\": \"oci-archive:/opt/images/busybox.tar\",\n"
        "\t\t\"replicas\": 2,\n"
        "\t\t\"readOnlyRootfs\": true,\n"
        "\t\t\"resources\": {\"memory\": 67108864, \"cpu\": 0.5}\n"
        "\t}\n"
        "}\n";
    Result<std::vector<WorkloadSpec>> r = ParseManifest(one, "web.json");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    REQUIRE(r->size() == 1);
    CHECK((*r)[0].replicas == 2);
    CHECK((*r)[0].read_only_rootfs);
    CHECK((*r)[0].resources == Resources{67108864, 500, 0});

    std::string bad = one;
    bad.replace(bad.find("2,"), 1, "-2");
    CHECK(Parse(bad) == "m.yaml:7:15: spec.replicas: must not be negative");
    CHECK(Parse("{\"apiVersion\":\"petrel.dev/"
                "v1\",\"kind\":\"Workload\",\"metadata\":{\"name\":\"web\"},"
                "\"spec\":{\"image\":\"busybox\",\"bogus\":1}}") ==
          "m.yaml:1:101: spec.bogus: unknown field");
    CHECK(Parse("{\"apiVersion\": \"petrel.dev/v1\",}") == "m.yaml:1:1: kind: is required");
    CHECK(Parse("{\"a\": 1") == "m.yaml:1:1: end of map flow not found");

    const char* array =
        "[\n"
        "  {\"apiVersion\": \"petrel.dev/v1\", \"kind\": \"Workload\", \"metadata\": {\"name\": "
        "\"a\"},\n"
        "   \"spec\": {\"image\": \"busybox\"}},\n"
        "  {\"apiVersion\": \"petrel.dev/v1\", \"kind\": \"Workload\", \"metadata\": {\"name\": "
        "\"b\"},\n"
        "   \"spec\": {\"image\": \"busybox\", \"command\": [\"/bin/sh\", \"-c\", \"echo "
        "\\\"hi\\\"\"]}}\n"
        "]\n";
    r = ParseManifest(array, "two.json");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    REQUIRE(r->size() == 2);
    CHECK((*r)[1].command == std::vector<std::string>{"/bin/sh", "-c", "echo \"hi\""});

    const char* list =
        "{\"apiVersion\": \"petrel.dev/v1\", \"kind\": \"List\", \"items\": [\n"
        "  {\"apiVersion\": \"petrel.dev/v1\", \"kind\": \"Workload\", \"metadata\": {\"name\": "
        "\"a\"},\n"
        "   \"spec\": {\"image\": \"busybox\"}},\n"
        "  {\"apiVersion\": \"petrel.dev/v1\", \"kind\": \"Workload\", \"metadata\": {\"name\": "
        "\"a\"},\n"
        "   \"spec\": {\"image\": \"busybox\"}}]}\n";
    CHECK(Parse(list) ==
          "m.yaml:4:76: metadata.name: duplicate workload name \"a\" (first at line 2)");
  }

  TEST_CASE("placement fields decode from YAML and JSON") {
    WorkloadSpec want;
    want.name = "web";
    want.image = "oci-archive:/opt/images/busybox.tar";
    want.node_selector = {{"zone", "north"}, {"petrel.dev/disk", "ssd"}};
    want.preferred_nodes = {"gw-2", "gw-1"};
    want.exclusive = true;
    want.standby = "warm";

    Result<std::vector<WorkloadSpec>> r =
        ParseManifest(With("  nodeSelector: {zone: north, petrel.dev/disk: ssd}\n"
                           "  preferredNodes: [gw-2, gw-1]\n"
                           "  exclusive: true\n"
                           "  standby: warm\n"),
                      "m.yaml");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK((*r)[0] == want);

    const char* json =
        "{\"apiVersion\": \"petrel.dev/v1\", \"kind\": \"Workload\", \"metadata\": {\"name\": "
        "\"web\"},\n"
        " \"spec\": {\"image\": \"oci-archive:/opt/images/busybox.tar\",\n"
        "          \"nodeSelector\": {\"zone\": \"north\", \"petrel.dev/disk\": \"ssd\"},\n"
        "          \"preferredNodes\": [\"gw-2\", \"gw-1\"],\n"
        "          \"exclusive\": true, \"standby\": \"warm\"}}\n";
    r = ParseManifest(json, "web.json");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK((*r)[0] == want);

    // Left out, null or at their defaults: nothing changes.
    WorkloadSpec plain = want;
    plain.node_selector.clear();
    plain.preferred_nodes.clear();
    plain.exclusive = false;
    plain.standby.clear();
    r = ParseManifest(With("  nodeSelector:\n  preferredNodes: []\n  exclusive: false\n"
                           "  standby: ~\n"),
                      "m.yaml");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK((*r)[0] == plain);

    // An exclusive workload may be scaled to 0.
    CHECK(Parse(With("  replicas: 0\n  exclusive: true\n")) == "ok web");

    std::string bad = json;
    bad.replace(bad.find("\"gw-1\"]"), 6, "\"gw-2\"");
    CHECK(Parse(bad) == "m.yaml:4:38: spec.preferredNodes[1]: duplicates spec.preferredNodes[0]");
  }

  // Issue 9: securityContext, as Kubernetes writes it in a Pod's container.
  TEST_CASE("securityContext decodes, and a bad capability or profile is named at its position") {
    WorkloadSpec want;
    want.name = "web";
    want.image = "oci-archive:/opt/images/busybox.tar";
    want.security_context.capabilities_add = {"NET_ADMIN", "CAP_SYS_TIME"};
    want.security_context.capabilities_drop = {"ALL"};
    want.security_context.seccomp = SecurityContext::Seccomp::kUnconfined;
    Result<std::vector<WorkloadSpec>> r =
        ParseManifest(With("  securityContext:\n"
                           "    privileged: false\n"
                           "    capabilities:\n"
                           "      add: [NET_ADMIN, CAP_SYS_TIME]\n"
                           "      drop: [ALL]\n"
                           "    seccompProfile: {type: Unconfined}\n"),
                      "m.yaml");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK((*r)[0] == want);

    WorkloadSpec privileged = want;
    privileged.security_context = SecurityContext{};
    privileged.security_context.privileged = true;
    r = ParseManifest(With("  securityContext: {privileged: true, seccompProfile: {type: "
                           "RuntimeDefault}}\n"),
                      "m.yaml");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK((*r)[0] == privileged);
    r = ParseManifest(With("  securityContext: {capabilities: {add: []}, seccompProfile:}\n"),
                      "m.yaml");
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    CHECK((*r)[0].security_context.empty());

    struct {
      std::string text;
      const char* want;
    } cases[] = {
        {With("  securityContext:\n    capabilities:\n      add: [NET_ADMIN, NET_FOO]\n"),
         "m.yaml:9:24: spec.securityContext.capabilities.add[1]: \"NET_FOO\" is not a "
         "capability (want one such as NET_ADMIN, or ALL)"},
        {With("  securityContext:\n    capabilities:\n      drop:\n      - net_raw\n"),
         "m.yaml:10:9: spec.securityContext.capabilities.drop[0]: \"net_raw\" is not a "
         "capability (want one such as NET_ADMIN, or ALL)"},
        {With("  securityContext:\n    capabilities: {add: [NET_RAW], drop: [CAP_NET_RAW]}\n"),
         "m.yaml:8:43: spec.securityContext.capabilities.drop[0]: \"CAP_NET_RAW\" is also in "
         "spec.securityContext.capabilities.add[0]"},
        {With("  securityContext:\n    capabilities: {keep: [NET_RAW]}\n"),
         "m.yaml:8:20: spec.securityContext.capabilities.keep: unknown field"},
        {With("  securityContext:\n    capabilities:\n      add: NET_ADMIN\n"),
         "m.yaml:9:12: spec.securityContext.capabilities.add: must be a list, not "
         "\"NET_ADMIN\""},
        {With("  securityContext:\n    seccompProfile:\n      type: Localhost\n"),
         "m.yaml:9:13: spec.securityContext.seccompProfile.type: \"Localhost\" is not a "
         "seccomp profile type (want RuntimeDefault or Unconfined; Localhost profiles are not "
         "supported)"},
        {With("  securityContext:\n    seccompProfile: {localhostProfile: x.json}\n"),
         "m.yaml:8:22: spec.securityContext.seccompProfile.localhostProfile: unknown field"},
        {With("  securityContext: {privileged: yes}\n"),
         "m.yaml:7:33: spec.securityContext.privileged: \"yes\" is not a boolean (true or "
         "false)"},
        {With("  securityContext: {runAsUser: 0}\n"),
         "m.yaml:7:21: spec.securityContext.runAsUser: unknown field"},
        {With("  securityContext: [privileged]\n"),
         "m.yaml:7:20: spec.securityContext: must be a mapping, not a list"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.text);
      CHECK(Parse(c.text) == c.want);
    }
  }

  TEST_CASE("hostile input gets an error, not a crash") {
    std::string deep = With("  command: ") + std::string(100000, '[') + "\n";
    std::string got = Parse(deep);
    CHECK(got.substr(0, 7) == "m.yaml:");
    CHECK(got.find("nested deeper than 64 levels") != std::string::npos);
    // Deeper than 64, but closed and shallow enough for yaml-cpp's own guard: refused
    // where the 65th level starts (the document and spec are levels 1 and 2).
    CHECK(Parse(With("  command: ") + std::string(63, '[') + std::string(63, ']') + "\n") ==
          "m.yaml:7:74: nested deeper than 64 levels");
    CHECK(Parse(With("  command: ") + std::string(62, '[') + std::string(62, ']') + "\n")
              .find("nested deeper") == std::string::npos);
    CHECK(Parse(std::string(5 << 20, '#')) == "m.yaml:1:1: larger than 4 MiB");
    // Input on which yaml-cpp 0.7's LoadAll would loop forever.
    CHECK(Parse(",") == "m.yaml:1:1: unexpected \",\"");
    CHECK(Parse("[a],") == "m.yaml:1:4: unexpected \",\"");
    CHECK(Parse("- a\n,\n") == "m.yaml:2:1: unexpected \",\"");
    CHECK(Parse("\"x\" ,") == "m.yaml:1:5: unexpected \",\"");
    // A self-referencing alias makes a cyclic node graph.
    CHECK(Parse(With("  command: &a [*a]\n")) ==
          "m.yaml:7:12: spec.command[0]: must be a string, not a list");
    CHECK(Parse(With("  env: {\"A\\nB\": x}\n")) ==
          "m.yaml:7:17: spec.env.A\\nB: \"A\\nB\" is not an environment variable name "
          "([A-Za-z_][A-Za-z0-9_]*)");
  }

  TEST_CASE("LoadManifests with allowed host paths: a bind mount elsewhere at its position") {
    testing::TempDir dir;
    WriteFile(dir.Sub("w.yaml"), With("  mounts:\n"
                                      "    - {type: bind, source: /srv/data/x, target: /a}\n"
                                      "    - {type: bind, source: /etc, target: /b}\n"));
    CHECK(LoadManifests(dir.Sub("w.yaml")).ok());
    CHECK(LoadManifests(dir.Sub("w.yaml"), {"/srv/data", "/etc"}).ok());
    Result<std::vector<WorkloadSpec>> r = LoadManifests(dir.Sub("w.yaml"), {"/srv/data"});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message() == dir.Sub("w.yaml") +
                                      ":9:28: spec.mounts[1].source: \"/etc\" is not below an "
                                      "allowed host path (/srv/data)");
  }

  TEST_CASE("LoadManifests reads a file or a directory, all or nothing") {
    testing::TempDir dir;
    WriteFile(dir.Sub("b.yaml"), With(""));
    WriteFile(
        dir.Sub("a.json"),
        "{\"apiVersion\": \"petrel.dev/v1\", \"kind\": \"Workload\", \"metadata\": {\"name\": "
        "\"db\"}, \"spec\": {\"image\": \"busybox\"}}");
    WriteFile(dir.Sub("c.yml"), "");
    WriteFile(dir.Sub("notes.txt"), "not a manifest");
    WriteFile(dir.Sub(".hidden.yaml"), "garbage: [");

    Result<std::vector<WorkloadSpec>> r = LoadManifests(dir.path());
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    REQUIRE(r->size() == 2);
    CHECK((*r)[0].name == "db");  // a.json comes first
    CHECK((*r)[1].name == "web");

    r = LoadManifests(dir.Sub("b.yaml"));
    REQUIRE(r.ok());
    CHECK(r->size() == 1);

    WriteFile(dir.Sub("d.yaml"), "# again\n" + With(""));
    r = LoadManifests(dir.path());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message() == dir.Sub("d.yaml") +
                                      ":5:9: metadata.name: duplicate workload name \"web\" (first "
                                      "in " +
                                      dir.Sub("b.yaml") + ":4:9)");

    WriteFile(dir.Sub("d.yaml"), With("  replicas: x\n"));
    r = LoadManifests(dir.path());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message() ==
          dir.Sub("d.yaml") + ":7:13: spec.replicas: \"x\" is not an integer");

    r = LoadManifests(dir.Sub("missing"));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().IsNotFound());
    CHECK(r.status().message().find(dir.Sub("missing")) == 0);
  }

  TEST_CASE("a relative local image path is taken from the manifest's directory") {
    testing::TempDir dir;
    std::filesystem::create_directories(dir.Sub("sub"));
    const std::string doc =
        "apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: IMG}\nspec: {image: ";
    WriteFile(dir.Sub("sub/a.yaml"), doc.substr(0, doc.find("IMG")) + "a" +
                                         doc.substr(doc.find("IMG") + 3) +
                                         "\"oci-archive:../images/bb.tar\"}\n");
    WriteFile(dir.Sub("sub/b.yaml"), doc.substr(0, doc.find("IMG")) + "b" +
                                         doc.substr(doc.find("IMG") + 3) + "\"oci:layout\"}\n");
    WriteFile(dir.Sub("sub/c.yaml"), doc.substr(0, doc.find("IMG")) + "c" +
                                         doc.substr(doc.find("IMG") + 3) +
                                         "\"docker-archive:/abs/x.tar\"}\n");
    Result<std::vector<WorkloadSpec>> r = LoadManifests(dir.Sub("sub"));
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    REQUIRE(r->size() == 3);
    CHECK((*r)[0].image == "oci-archive:" + dir.Sub("images/bb.tar"));
    CHECK((*r)[1].image == "oci:" + dir.Sub("sub/layout"));
    CHECK((*r)[2].image == "docker-archive:/abs/x.tar");
    // From text alone there is no directory to resolve against.
    Result<std::vector<WorkloadSpec>> t = ParseManifest(
        "apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: a}\n"
        "spec: {image: \"oci:layout\"}\n",
        "in.yaml");
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().message() == "in.yaml:4:15: spec.image: \"layout\" must be an absolute path");
    // A registry reference is checked by the puller's own parser, at the image's position.
    Result<std::vector<WorkloadSpec>> reg = ParseManifest(
        "apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: a}\n"
        "spec: {image: \"127.0.0.1:5000/App:1\"}\n",
        "in.yaml");
    REQUIRE_FALSE(reg.ok());
    CHECK(reg.status().message() ==
          "in.yaml:4:15: spec.image: \"127.0.0.1:5000/App:1\" is not an image (want oci:DIR, "
          "oci-archive:FILE, docker-archive:FILE or a registry reference): repository \"App\" "
          "must be lowercase");
    Result<std::vector<WorkloadSpec>> good = ParseManifest(
        "apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: a}\n"
        "spec: {image: \"127.0.0.1:5000/app:1\"}\n",
        "in.yaml");
    REQUIRE_MESSAGE(good.ok(), good.status().message());
    CHECK((*good)[0].image == "127.0.0.1:5000/app:1");
  }

  TEST_CASE("the example manifests are valid") {
    Result<std::vector<WorkloadSpec>> r = LoadManifests(ExamplesDir());
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    std::vector<std::string> names;
    for (const WorkloadSpec& s : *r) names.push_back(s.name);
    CHECK(names == std::vector<std::string>{"hello", "ticker", "uptime-log", "web"});
    for (const WorkloadSpec& s : *r) {
      CAPTURE(s.name);
      CHECK(ValidateWorkload(s).ok());
      Result<WorkloadSpec> back = SpecFromJson(SpecToJson(s));
      REQUIRE(back.ok());
      CHECK(*back == s);
    }
  }

}  // TEST_SUITE

}  // namespace
}  // namespace petrel
