// Tests of the runtime table (petrel/runtimes.h) and of the adapters' entries in it.
#include "petrel/runtimes.h"

#include <doctest/doctest.h>

#include "petrel/testing/fake_clock.h"
#include "petrel/testing/fake_runtime.h"
#ifdef PETREL_WITH_CRUN
#include "petrel/crun.h"
#endif

namespace petrel {
namespace {

RuntimeFactory Failing(const std::string& why) {
  return [why](const RuntimeConfig&) -> Result<std::shared_ptr<ContainerRuntime>> {
    return Status::Unavailable(why);
  };
}

TEST_SUITE("runtimes") {
  TEST_CASE("a registry lists its runtimes in order and refuses bad or second names") {
    RuntimeRegistry registry;
    CHECK(registry.Find("crun").status().message() == "runtime \"crun\": no runtime is registered");
    REQUIRE(registry.Register({"a", "the first", Failing("a")}).ok());
    CHECK(registry.Names() == "a");
    REQUIRE(registry.Register({"b-2", "the second", Failing("b")}).ok());
    REQUIRE(registry.Register({"c_3", "the third", Failing("c")}).ok());
    CHECK(registry.Names() == "a, b-2 or c_3");
    CHECK(registry.Names(" and ") == "a, b-2 and c_3");
    CHECK(registry.entries().size() == 3);
    CHECK(registry.entries()[1].description == "the second");

    CHECK(registry.Register({"a", "again", Failing("x")}).code() == Status::Code::kAlreadyExists);
    CHECK(registry.Register({"", "nameless", Failing("x")}).IsInvalidArgument());
    CHECK(registry.Register({"x y", "spaced", Failing("x")}).IsInvalidArgument());
    CHECK(registry.Register({"d", "no factory", nullptr}).IsInvalidArgument());
    CHECK(registry.entries().size() == 3);

    Result<const RuntimeEntry*> b = registry.Find("b-2");
    REQUIRE(b.ok());
    CHECK((*b)->name == "b-2");
    Status unknown = registry.Find("docker").status();
    CHECK(unknown.IsNotFound());
    CHECK(unknown.message() == "runtime \"docker\" is not a, b-2 or c_3");
    CHECK(registry.Create("docker", RuntimeConfig{}).status().message() == unknown.message());
    CHECK(registry.Create("c_3", RuntimeConfig{}).status().message() == "c");
  }

  TEST_CASE("fake: made on the config's clock, and an endpoint is refused") {
    RuntimeRegistry registry;
    REQUIRE(testing::RegisterFakeRuntime(&registry).ok());
    CHECK(testing::RegisterFakeRuntime(&registry).code() == Status::Code::kAlreadyExists);
    auto clock = std::make_shared<testing::FakeClock>();
    RuntimeConfig config;
    config.clock = clock;
    Result<std::shared_ptr<ContainerRuntime>> fake = registry.Create("fake", config);
    REQUIRE_MESSAGE(fake.ok(), fake.status().ToString());
    CHECK((*fake)->Name() == "fake");
    ContainerSpec spec;
    spec.name = "c";
    REQUIRE((*fake)->Create(spec).ok());
    CHECK((*fake)->Inspect("fake000001")->created_at == clock->Now());

    config.endpoint = "unix:///run/x.sock";
    Status refused = registry.Create("fake", config).status();
    CHECK(refused.IsInvalidArgument());
    CHECK(refused.message() ==
          "runtime fake takes no endpoint (its containers live in memory); got "
          "\"unix:///run/x.sock\"");
  }

  TEST_CASE("none: lists no containers and refuses to make or run one") {
    RuntimeRegistry registry;
    REQUIRE(testing::RegisterFakeRuntime(&registry).ok());
    REQUIRE(RegisterNoRuntime(&registry).ok());
    CHECK(RegisterNoRuntime(&registry).code() == Status::Code::kAlreadyExists);
    CHECK(registry.Names() == "fake or none");
    CHECK(registry.entries().front().name == "fake");  // registered last: never the default
    CHECK(registry.entries()[1].description == "no containers: for a witness (with --witness)");
    Result<std::shared_ptr<ContainerRuntime>> none = registry.Create("none", RuntimeConfig{});
    REQUIRE_MESSAGE(none.ok(), none.status().ToString());
    ContainerRuntime& r = **none;
    CHECK(r.Name() == "none");

    Result<std::vector<ContainerInfo>> all = r.List({});
    REQUIRE(all.ok());
    CHECK(all->empty());
    CHECK(r.List({{kLabelWorkload, "web"}})->empty());

    const std::string why = "runtime none runs no containers (a witness)";
    Status s = r.PullImage("oci-archive:/images/busybox.tar", petrel::PullOptions());
    CHECK(s.code() == Status::Code::kFailedPrecondition);
    CHECK(s.message() == "oci-archive:/images/busybox.tar: " + why);
    ContainerSpec spec;
    spec.name = "petrel_w1_web_0";
    spec.image = "oci-archive:/images/busybox.tar";
    Result<std::string> created = r.Create(spec);
    CHECK(created.status().code() == Status::Code::kFailedPrecondition);
    CHECK(created.status().message() == "petrel_w1_web_0: " + why);
    s = r.Start("c1");
    CHECK(s.code() == Status::Code::kFailedPrecondition);
    CHECK(s.message() == "c1: " + why);

    // Nothing exists, so whatever names a container is NotFound, as on any runtime.
    CHECK(r.Kill("c1", 9).IsNotFound());
    CHECK(r.Kill("c1", 9).message() == "container c1 not found (" + why + ")");
    CHECK(r.Remove("c1").IsNotFound());
    CHECK(r.Inspect("c1").status().IsNotFound());
    CHECK(r.Logs("c1", LogOptions{}).status().IsNotFound());
    bool called = false;
    r.SetExitHandler([&called](const std::string&, int) { called = true; });
    r.SetExitHandler(nullptr);
    CHECK(!called);
    CHECK(r.List({})->empty());

    // Each one is its own, stateless; NoRuntime() makes one without a registry.
    CHECK(NoRuntime()->Name() == "none");

    RuntimeConfig config;
    config.endpoint = "/run/containerd/containerd.sock";
    Status refused = registry.Create("none", config).status();
    CHECK(refused.IsInvalidArgument());
    CHECK(refused.message() ==
          "runtime none takes no endpoint (it runs no containers); got "
          "\"/run/containerd/containerd.sock\"");
  }

#ifdef PETREL_WITH_CRUN
  TEST_CASE("crun and runc: an endpoint and an empty state dir are refused") {
    RuntimeRegistry registry;
    REQUIRE(RegisterCrunRuntimes(&registry).ok());
    CHECK(registry.Names() == "crun or runc");
    RuntimeConfig config;
    config.state_dir = "/nonexistent";
    config.endpoint = "/run/containerd/containerd.sock";
    CHECK(registry.Create("runc", config).status().message() ==
          "runtime runc takes no endpoint (it runs the runc command, no daemon); got "
          "\"/run/containerd/containerd.sock\"");
    CHECK(registry.Create("crun", RuntimeConfig{}).status().message() ==
          "runtime crun: state_dir is required");
  }
#endif
}

}  // namespace
}  // namespace petrel
