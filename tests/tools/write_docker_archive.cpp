// write_docker_archive: an image petrel reads, written as `docker save` output by
// WriteDockerArchiveOf (lib/image/docker_archive.h), for tests that load it into a real
// dockerd (tests/integration/docker_archive_test.sh).
//
//   write_docker_archive REF FILE [REPO_TAG...]
//
// REF is oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE; FILE "-" is
// stdout. Prints the image id (to stderr when FILE is "-"); on failure the error, one
// line, and exits 1.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "lib/image/docker_archive.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: write_docker_archive REF FILE [REPO_TAG...]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);  // a reader that goes away is EPIPE, as in petreld
  const std::string file = argv[2];
  const bool to_stdout = file == "-";
  int fd = to_stdout ? STDOUT_FILENO
                     : open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "%s: %s\n", file.c_str(), std::strerror(errno));
    return 1;
  }
  const std::vector<std::string> tags(argv + 3, argv + argc);
  petrel::Result<std::string> id = petrel::internal::WriteDockerArchiveOf(argv[1], tags, fd);
  if (!to_stdout && close(fd) != 0 && id.ok()) {
    id = petrel::Status::IOError(file + ": close: " + std::strerror(errno));
  }
  if (!id.ok()) {
    std::fprintf(stderr, "%s\n", id.status().ToString().c_str());
    return 1;
  }
  std::fprintf(to_stdout ? stderr : stdout, "%s\n", id->c_str());
  return 0;
}
