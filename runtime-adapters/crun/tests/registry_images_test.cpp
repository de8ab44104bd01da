// The crun adapter's images against a real registry (issue 12), run by
// tests/integration/registry_images_test.sh, which starts Debian's docker-registry on
// 127.0.0.1 and builds three different busybox images: $PETREL_TEST_REGISTRY is the
// registry (127.0.0.1:PORT), $PETREL_TEST_IMAGES a directory with a.tar, b.tar and c.tar
// (OCI archives), and $PETREL_TEST_CUT_REGISTRY the same registry behind a proxy that
// cuts every connection after 1 MiB, with resume:1 pushed (a layer of about 7 MiB,
// uncompressed). Cases push into the registry with skopeo. A missing variable, tool or
// root is a failure, never a skip.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "petrel/crun.h"
#include "tests/lib/doctest_main.h"
#include "tests/lib/files.h"

namespace petrel {
namespace {

using petrel::testing::TempDir;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  REQUIRE_MESSAGE((v != nullptr && *v != '\0'),
                  name << " is not set (run registry_images_test.sh)");
  return v;
}

std::string Registry() { return Env("PETREL_TEST_REGISTRY"); }

// Pushes image NAME (a, b or c) of $PETREL_TEST_IMAGES as `repo_tag` into the registry.
void Push(const std::string& name, const std::string& repo_tag) {
  const std::string cmd =
      "skopeo copy -q --dest-tls-verify=false oci-archive:" + Env("PETREL_TEST_IMAGES") + "/" +
      name + ".tar docker://" + Registry() + "/" + repo_tag + " >/dev/null";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "failed: " << cmd);
}

struct Runtime {
  TempDir state;
  std::mutex mu;
  std::vector<std::string> logged;
  std::shared_ptr<ContainerRuntime> rt;

  explicit Runtime(int64_t store_max = 0) {
    CrunOptions o;
    o.runtime = "crun";
    o.state_dir = state.path();
    o.image_store_max_bytes = store_max;
    o.log_sink = [this](LogLevel, std::string_view line) {
      std::lock_guard<std::mutex> lock(mu);
      logged.emplace_back(line);
    };
    Result<std::shared_ptr<ContainerRuntime>> made = NewCrunRuntime(o);
    REQUIRE_MESSAGE(made.ok(), made.status().ToString());
    rt = *made;
  }
  std::string Logged() {
    std::lock_guard<std::mutex> lock(mu);
    std::string all;
    for (const std::string& l : logged) all += l + "\n";
    return all;
  }
  // Images by id.
  std::map<std::string, ImageInfo> Images() {
    Result<std::vector<ImageInfo>> list = rt->ListImages();
    REQUIRE_MESSAGE(list.ok(), list.status().ToString());
    std::map<std::string, ImageInfo> out;
    for (const ImageInfo& i : *list) out[i.id] = i;
    return out;
  }
  std::string IdOf(const std::string& ref) {
    for (const auto& [id, info] : Images()) {
      for (const std::string& r : info.refs) {
        if (r == ref) return id;
      }
    }
    FAIL("no image has the reference " << ref);
    return "";
  }
  std::string CreateFrom(const std::string& name, const std::string& image) {
    ContainerSpec spec;
    spec.name = "regimg-" + name;
    spec.image = image;
    spec.command = {"/bin/true"};
    Result<std::string> id = rt->Create(spec);
    REQUIRE_MESSAGE(id.ok(), id.status().ToString());
    return *id;
  }
  size_t Blobs() {
    std::error_code ec;
    size_t n = 0;
    for (const auto& e :
         std::filesystem::directory_iterator(state.path() + "/images/blobs/sha256", ec)) {
      (void)e;
      n++;
    }
    return n;
  }
};

// What a pull told its listener, in order.
struct Heard {
  std::vector<PullProgress> all;
  PullOptions Options(PullPolicy policy) {
    PullOptions o;
    o.policy = policy;
    o.progress = [this](const PullProgress& p) { all.push_back(p); };
    return o;
  }
  std::vector<std::string> Phases() const {
    std::vector<std::string> out;
    for (const PullProgress& p : all) {
      if (out.empty() || out.back() != p.phase) out.push_back(p.phase);
    }
    return out;
  }
  PullProgress Last(const std::string& phase) const {
    PullProgress last;
    for (const PullProgress& p : all) {
      if (p.phase == phase) last = p;
    }
    return last;
  }
};

TEST_SUITE("registry-images") {
  TEST_CASE("a partial blob is kept by digest and the next pull goes on from its end") {
    Runtime r;
    const std::string ref = Env("PETREL_TEST_CUT_REGISTRY") + "/resume:1";
    // Each pull gets at most 3 MiB (three connections cut at 1 MiB): only pulls that go on
    // from what the ones before kept ever complete the layer.
    std::vector<int64_t> kept;
    Status pulled;
    for (int i = 0; i < 12 && !(pulled = r.rt->PullImage(ref, PullOptions())).ok(); i++) {
      CHECK_MESSAGE(pulled.code() == Status::Code::kUnavailable, pulled.ToString());
      int64_t bytes = 0;
      std::error_code ec;
      for (const auto& e :
           std::filesystem::directory_iterator(r.state.path() + "/images/partial/sha256", ec)) {
        bytes += static_cast<int64_t>(e.file_size(ec));
      }
      kept.push_back(bytes);
    }
    REQUIRE_MESSAGE(pulled.ok(), pulled.ToString());
    CAPTURE(kept.size());
    REQUIRE(kept.size() >= 2);  // it did take more than one pull
    for (size_t i = 1; i < kept.size(); i++) CHECK(kept[i] > kept[i - 1]);  // each went on
    std::error_code ec;
    CHECK(std::filesystem::is_empty(r.state.path() + "/images/partial/sha256", ec));
    const std::string id = r.CreateFrom("resumed", ref);  // the image is whole
    REQUIRE(r.rt->Remove(id).ok());
  }

  TEST_CASE("a cancelled pull stops within seconds though the registry never answers") {
    // A "registry" that takes connections and never says a word: without the cancel,
    // each of the 3 attempts would wait out libcurl's low-speed limit (60 s).
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(listen(fd, 8) == 0);
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    const std::string ref = "127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/mute:1";
    Runtime r;
    const auto t0 = std::chrono::steady_clock::now();
    PullOptions o;
    o.cancelled = [t0] {
      return std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(300);
    };
    const Status pulled = r.rt->PullImage(ref, o);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    close(fd);
    CHECK(pulled.code() == Status::Code::kUnavailable);
    CHECK_MESSAGE(pulled.message().find("pull cancelled") != std::string::npos, pulled.ToString());
    CHECK_MESSAGE(ms < 10000, "the cancelled pull took " << ms << " ms");
  }

  TEST_CASE("Always pulls a moved tag again, IfNotPresent and a digest keep theirs, and progress") {
    Runtime r;
    Push("a", "app:1");
    const std::string ref = Registry() + "/app:1";
    Heard first;
    Status pulled = r.rt->PullImage(ref, first.Options(PullPolicy::kIfNotPresent));
    REQUIRE_MESSAGE(pulled.ok(), pulled.ToString());
    CHECK(first.Phases() == std::vector<std::string>{"resolving", "downloading", "unpacking"});
    const PullProgress down = first.Last("downloading");
    CHECK(down.bytes_total > (1 << 20));  // the 1 MiB pad, compressed or not
    CHECK(down.bytes_done == down.bytes_total);
    CHECK(down.layers_total == 1);
    CHECK(down.layers_done == 1);
    const std::string id_a = r.IdOf(ref);
    const size_t blobs_a = r.Blobs();
    CHECK(blobs_a >= 3);  // manifest, config, layer
    const std::string user = r.CreateFrom("user", ref);

    Push("b", "app:1");  // the tag moves
    Heard again;
    REQUIRE(r.rt->PullImage(ref, again.Options(PullPolicy::kIfNotPresent)).ok());
    CHECK(again.all.empty());
    CHECK(r.IdOf(ref) == id_a);
    Heard always;
    pulled = r.rt->PullImage(ref, always.Options(PullPolicy::kAlways));
    REQUIRE_MESSAGE(pulled.ok(), pulled.ToString());
    CHECK(always.Phases() == std::vector<std::string>{"resolving", "downloading", "unpacking"});
    const std::string id_b = r.IdOf(ref);
    CHECK(id_b != id_a);
    std::map<std::string, ImageInfo> images = r.Images();
    REQUIRE(images.size() == 2);
    CHECK(images[id_a].in_use);  // the container keeps its image
    CHECK(images[id_a].refs.empty());
    CHECK(!images[id_b].in_use);

    // The tag has not moved since: resolved, nothing downloaded or unpacked.
    Heard still;
    REQUIRE(r.rt->PullImage(ref, still.Options(PullPolicy::kAlways)).ok());
    CHECK(still.Phases() == std::vector<std::string>{"resolving", "downloading"});
    CHECK(still.all.back().bytes_done == still.all.back().bytes_total);
    CHECK(r.IdOf(ref) == id_b);

    // A reference by digest never moves: once had, Always asks nothing.
    std::string digest;
    {
      const std::string cmd = "skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://" +
                              ref + " > " + r.state.path() + "/digest";
      REQUIRE(std::system(cmd.c_str()) == 0);
      digest = petrel::testing::ReadFile(r.state.path() + "/digest");
      digest = digest.substr(0, digest.find('\n'));
    }
    const std::string by_digest = Registry() + "/app@" + digest;
    REQUIRE(r.rt->PullImage(by_digest, PullOptions()).ok());
    CHECK(r.IdOf(by_digest) == id_b);
    Heard pinned;
    REQUIRE(r.rt->PullImage(by_digest, pinned.Options(PullPolicy::kAlways)).ok());
    CHECK(pinned.all.empty());

    // Removal: refused while in use; b goes with its blobs; a with the container.
    CHECK(r.rt->RemoveImage(id_a).message() == id_a + ": in use by container " + user);
    REQUIRE(r.rt->RemoveImage(ref).ok());
    CHECK(r.Images().size() == 1);
    REQUIRE(r.rt->Remove(user).ok());
    Result<PruneResult> pruned = r.rt->PruneImages();
    REQUIRE_MESSAGE(pruned.ok(), pruned.status().ToString());
    CHECK(pruned->removed == std::vector<std::string>{id_a});
    CHECK(r.Images().empty());
    CHECK(r.Blobs() == 0);
    // Never, after all that: nothing is had.
    CHECK(r.rt->PullImage(ref, Heard().Options(PullPolicy::kNever)).message() ==
          ref + ": not present, and imagePullPolicy is Never");
  }

  TEST_CASE("image_store_max_bytes: after a pull the least recently used unused images go") {
    for (const char* name : {"a", "b", "c"}) Push(name, std::string("lru-") + name + ":1");
    Runtime r(/*store_max=*/1);  // every pull leaves only the image pulled and those in use
    auto ref = [](const char* name) { return Registry() + "/lru-" + name + ":1"; };
    REQUIRE(r.rt->PullImage(ref("a"), PullOptions()).ok());
    const std::string id_a = r.IdOf(ref("a"));
    const std::string user = r.CreateFrom("lru", ref("a"));
    REQUIRE(r.rt->PullImage(ref("b"), PullOptions()).ok());
    const std::string id_b = r.IdOf(ref("b"));
    CHECK(r.Images().size() == 2);  // a in use, b just pulled
    REQUIRE(r.rt->PullImage(ref("c"), PullOptions()).ok());
    std::map<std::string, ImageInfo> images = r.Images();
    CHECK(images.size() == 2);
    CHECK(images.count(id_a) == 1);
    CHECK(images.count(id_b) == 0);
    const std::string log = r.Logged();
    CHECK_MESSAGE(log.find("removed the least recently used image " + id_b + " (" + ref("b") +
                           ")") != std::string::npos,
                  log);
    CHECK_MESSAGE(log.find("image store still above its limit") != std::string::npos, log);
    REQUIRE(r.rt->Remove(user).ok());
    REQUIRE(r.rt->PullImage(ref("b"), PullOptions()).ok());
    images = r.Images();
    REQUIRE(images.size() == 1);
    CHECK(images.begin()->second.refs == std::vector<std::string>{ref("b")});
  }
}

}  // namespace
}  // namespace petrel

int main(int argc, char** argv) { return petrel::testing::RunDoctest(argc, argv); }
