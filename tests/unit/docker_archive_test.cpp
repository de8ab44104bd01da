#include "lib/image/docker_archive.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "lib/image/archive_lib.h"
#include "lib/image/digest.h"
#include "lib/image/image_store.h"
#include "lib/image/layout.h"
#include "lib/util/fs.h"
#include "tests/lib/files.h"

namespace petrel::internal {
namespace {

using nlohmann::json;
using petrel::testing::ReadFile;
using petrel::testing::TempDir;
using petrel::testing::WriteFile;

const std::string kId = "sha256:e76ace49a218e022060ea05f7d72f1b586f9f989a1192b1b31c08a2291fe50c7";

// The busybox image of examples/images/make-busybox-image in `format`, built at `path`:
// its reference.
std::string MakeBusybox(const std::string& path, const std::string& format, bool gzip = false) {
  const std::string cmd = std::string(PETREL_SOURCE_DIR) + "/examples/images/make-busybox-image" +
                          " --format " + format + (gzip ? " --gzip " : " ") + path + " >/dev/null";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
  return (format == "oci-dir" ? "oci:" : format + ":") + path;
}

// WriteDockerArchiveOf(ref, tags) into the file `out`.
Result<std::string> WriteTo(const std::string& ref, const std::vector<std::string>& tags,
                            const std::string& out) {
  UniqueFd fd(open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  REQUIRE(fd.valid());
  return WriteDockerArchiveOf(ref, tags, fd.get());
}

// The manifest of the OCI layout in `dir` and the name of its blob.
json Manifest(const std::string& dir, std::string* blob) {
  const json index = json::parse(ReadFile(dir + "/index.json"));
  *blob = dir + "/blobs/sha256/" + index["manifests"][0]["digest"].get<std::string>().substr(7);
  return json::parse(ReadFile(*blob));
}

TEST_SUITE("docker_archive") {
  TEST_CASE("every local image format becomes a docker-archive the store reads back whole") {
    TempDir dir;
    struct Case {
      std::string format;
      bool gzip;
    };
    for (const Case& c : {Case{"oci-archive", false}, Case{"oci-archive", true},
                          Case{"oci-dir", false}, Case{"docker-archive", false}}) {
      CAPTURE(c.format);
      CAPTURE(c.gzip);
      const std::string name = c.format + (c.gzip ? "-gzip" : "");
      const std::string ref = MakeBusybox(dir.Sub(name), c.format, c.gzip);
      const std::string out = dir.Sub(name + ".docker.tar");
      Result<std::string> id = WriteTo(ref, {"busybox:t1", "ghcr.io/org/app:2"}, out);
      REQUIRE_MESSAGE(id.ok(), id.status().ToString());
      CHECK(*id == kId);

      ArchiveUse archive;
      REQUIRE(archive.status().ok());
      std::unique_ptr<ImageSource> source = ImageSource::Tar(out);
      const json manifest = json::parse(source->ReadFile("manifest.json", kMaxJsonSize).value());
      REQUIRE(manifest.size() == 1);
      CHECK(manifest[0]["Config"] == kId.substr(7) + ".json");
      CHECK(manifest[0]["RepoTags"] == json{"docker.io/library/busybox:t1", "ghcr.io/org/app:2"});
      Result<ImagePlan> plan = ReadDockerArchive(source.get());
      REQUIRE_MESSAGE(plan.ok(), plan.status().ToString());
      CHECK(plan->id == kId);
      CHECK(plan->config.cmd == std::vector<std::string>{"/bin/sh"});
      REQUIRE(plan->layers.size() == 1);
      // The layer as the source stores it: gzip stays gzip, named by its blob digest.
      const std::string layer = source->ReadFile(plan->layers[0].name, 64 << 20).value();
      CHECK(plan->layers[0].name == Sha256Digest(layer).substr(7) + "/layer.tar");
      CHECK((layer.compare(0, 2, "\x1f\x8b") == 0) == c.gzip);
      if (!c.gzip) CHECK(Sha256Digest(layer) == plan->layers[0].diff_id);

      // A store checks every diff_id as it unpacks (once per id: a store of its own).
      auto store = ImageStore::Open(dir.Sub("store-" + name));
      REQUIRE(store.ok());
      Result<Image> image = (*store)->Pull("docker-archive:" + out);
      REQUIRE_MESSAGE(image.ok(), image.status().ToString());
      CHECK(image->id == kId);
    }
  }

  TEST_CASE("the archive streams through a pipe to a reader on another thread") {
    TempDir dir;
    const std::string ref = MakeBusybox(dir.Sub("busybox.tar"), "oci-archive");
    REQUIRE(WriteTo(ref, {}, dir.Sub("file.tar")).ok());
    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    UniqueFd read_end(p[0]), write_end(p[1]);
    std::string got;
    std::thread reader([&] {
      char buf[4096];
      ssize_t n;
      while ((n = read(read_end.get(), buf, sizeof(buf))) > 0) got.append(buf, n);
    });
    Result<std::string> id = WriteDockerArchiveOf(ref, {}, write_end.get());
    write_end.reset();
    reader.join();
    REQUIRE_MESSAGE(id.ok(), id.status().ToString());
    CHECK(got == ReadFile(dir.Sub("file.tar")));
    CHECK(got.find("\"RepoTags\":[]") != std::string::npos);
  }

  TEST_CASE("a blob that is not what its digest says fails, naming it, and no tar ends") {
    TempDir dir;
    const std::string layout = dir.Sub("busybox");
    const std::string ref = MakeBusybox(layout, "oci-dir");
    std::string manifest_blob;
    const std::string digest = Manifest(layout, &manifest_blob)["layers"][0]["digest"];
    const std::string blob = layout + "/blobs/sha256/" + digest.substr(7);
    std::string data = ReadFile(blob);
    data[data.size() - 600] ^= 1;  // a byte of the last file's data: same size
    WriteFile(blob, data);

    const std::string out = dir.Sub("out.tar");
    Result<std::string> id = WriteTo(ref, {}, out);
    REQUIRE_FALSE(id.ok());
    CHECK(id.status().IsInvalidArgument());
    const std::string msg = id.status().message();
    CHECK(msg.rfind(ref + ": layer " + digest + ": digest mismatch (content is sha256:", 0) == 0);
    CHECK(msg.find('\n') == std::string::npos);
    // The layer's last bytes were held back: what was written is a tar cut short.
    ArchiveUse archive;
    REQUIRE(archive.status().ok());
    std::unique_ptr<ImageSource> written = ImageSource::Tar(out);
    CHECK_FALSE(written->ReadFile(digest.substr(7) + "/layer.tar", 64 << 20).ok());
  }

  TEST_CASE("a zstd layer is refused: dockerd 20.10 cannot load it") {
    TempDir dir;
    const std::string layout = dir.Sub("busybox");
    const std::string ref = MakeBusybox(layout, "oci-dir");
    // Only the first bytes are read: a zstd frame's magic number is enough.
    const std::string zstd = std::string("\x28\xb5\x2f\xfd", 4) + "not really zstd";
    const std::string zstd_digest = Sha256Digest(zstd);
    WriteFile(layout + "/blobs/sha256/" + zstd_digest.substr(7), zstd);
    std::string manifest_blob;
    json manifest = Manifest(layout, &manifest_blob);
    manifest["layers"][0]["digest"] = zstd_digest;
    manifest["layers"][0]["size"] = zstd.size();
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd";
    const std::string text = manifest.dump();
    WriteFile(layout + "/blobs/sha256/" + Sha256Digest(text).substr(7), text);
    json index = json::parse(ReadFile(layout + "/index.json"));
    index["manifests"][0]["digest"] = Sha256Digest(text);
    index["manifests"][0]["size"] = text.size();
    WriteFile(layout + "/index.json", index.dump());

    Result<std::string> id = WriteTo(ref, {}, dir.Sub("out.tar"));
    REQUIRE_FALSE(id.ok());
    CHECK(id.status().code() == Status::Code::kNotSupported);
    CHECK(id.status().message() == ref + ": layer " + zstd_digest +
                                       ": compressed with zstd, which dockerd 20.10 cannot load");
  }

  TEST_CASE("a bad reference or repo tag is one line naming it") {
    TempDir dir;
    const std::string out = dir.Sub("out.tar");
    Result<std::string> missing = WriteTo("oci-archive:" + dir.Sub("none.tar"), {}, out);
    CHECK(missing.status().IsNotFound());
    CHECK(missing.status().message() ==
          "oci-archive:" + dir.Sub("none.tar") + ": no such file or directory");
    Result<std::string> unknown = WriteTo("docker://busybox", {}, out);
    CHECK(unknown.status().IsInvalidArgument());
    CHECK(unknown.status().message().rfind("docker://busybox: unsupported image reference", 0) ==
          0);
    Result<std::string> not_layout = WriteTo("oci:" + dir.path(), {}, out);
    CHECK(not_layout.status().message() ==
          "oci:" + dir.path() + ": not an OCI image layout (no index.json)");

    const std::string ref = MakeBusybox(dir.Sub("busybox.tar"), "oci-archive");
    Result<std::string> no_tag = WriteTo(ref + ":v2", {}, out);
    CHECK(no_tag.status().IsNotFound());
    CHECK(no_tag.status().message() ==
          ref + ":v2: no manifest tagged \"v2\" in index.json (tags: latest)");
    for (const std::string& tag : std::vector<std::string>{
             "Busybox:1", "busybox@sha256:" + std::string(64, 'a'), "oci:/x"}) {
      CAPTURE(tag);
      Result<std::string> bad = WriteTo(ref, {tag}, out);
      CHECK(bad.status().IsInvalidArgument());
      CHECK(bad.status().message().rfind(ref + ": repo tag \"" + tag + "\": ", 0) == 0);
      CHECK(bad.status().message().find('\n') == std::string::npos);
    }
  }
}

}  // namespace
}  // namespace petrel::internal
