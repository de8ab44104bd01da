// Any image petrel reads, written as `docker save` output (a docker-archive): the only
// image format Docker 20.10 (Debian 12's docker.io) takes at POST /images/load, which
// refuses OCI layouts (moby#44162). The Docker adapter streams it there.
//
// The output is an uncompressed tar of
//   manifest.json     [{"Config":"<hex>.json","RepoTags":[...],"Layers":["<hex>/layer.tar"]}]
//   <hex>.json        the config blob as stored (<hex>: of the image id, its digest)
//   <hex>/layer.tar   each layer blob as stored, bottom first (<hex>: of its blob digest,
//                     or its diff_id when the layout names none, as `docker save` does)
// Layers are passed on as they are: uncompressed and gzip layers dockerd 20.10 loads.
// zstd layers it refuses ("archive/tar: invalid tar header", tried on 20.10.24), so they
// are refused here: NotSupported "layer sha256:..: compressed with zstd, which dockerd
// 20.10 cannot load", before any byte of that layer is written.
//
// Every blob is streamed, never held whole, and checked against its digest (the
// config against the image id; a layer against its descriptor's digest and size, or,
// from a docker-archive, which names none, an uncompressed layer against its diff_id;
// dockerd checks every diff_id again). A blob's last bytes are held back until it is
// found good: on any error the stream ends inside an entry, never as a whole tar, so
// dockerd refuses it ("unexpected EOF") even when the caller passes it on. Beware that
// dockerd answers a refused load with 200 and {"error": ...} in the body.
//
// Thread-safety: none; a call writes from its own thread. A pipe whose reader goes away
// raises SIGPIPE: the process must ignore it (petreld does); the write then fails EPIPE.
#ifndef PETREL_LIB_IMAGE_DOCKER_ARCHIVE_H_
#define PETREL_LIB_IMAGE_DOCKER_ARCHIVE_H_

#include <string>
#include <vector>

#include "lib/image/layout.h"
#include "lib/image/source.h"
#include "petrel/status.h"

namespace petrel::internal {

// Writes the image of `plan`, its blobs read from `source`, to `fd` (a pipe, a socket or
// a file, written from its current position; left open), named by `repo_tags`: registry
// references with a tag ("busybox", "ghcr.io/org/app:1.2"), written in canonical form
// ("docker.io/library/busybox:latest"); none loads the image untagged, known by its id.
// Errors:
//   InvalidArgument  a repo tag that is not a reference or has a digest; a blob that is
//                    not what the plan says: "layer sha256:..: digest mismatch (content is
//                    sha256:..)", "layer sha256:..: size is N bytes, descriptor says M"
//   NotSupported     a zstd layer (above)
//   IOError          reading the source or writing `fd` failed ("docker-archive: write:
//                    Broken pipe")
// REQUIRES: an ArchiveUse alive (archive_lib.h).
Status WriteDockerArchive(ImageSource* source, const ImagePlan& plan,
                          const std::vector<std::string>& repo_tags, int fd);

// The image `ref` (oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE; see
// image_store.h) written to `fd` as WriteDockerArchive does: the image id ("sha256:<hex>",
// what dockerd will call the image). Errors are one line naming `ref` first, e.g.
// "oci-archive:/x/img.tar: layer sha256:ab..: digest mismatch (content is sha256:cd..)",
// NotFound "oci:/x/img: no such file or directory" or "... no manifest tagged \"v2\" ...".
Result<std::string> WriteDockerArchiveOf(const std::string& ref,
                                         const std::vector<std::string>& repo_tags, int fd);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_DOCKER_ARCHIVE_H_
