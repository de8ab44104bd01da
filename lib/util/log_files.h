// A container's output on disk, for every adapter that keeps it in files of its own (the
// crun shim, the containerd logger): the one place that knows the files' names, how
// they rotate, and how they are read back as ContainerRuntime::Logs.
//
// The files: "<dir>/log.<20-digit base offset>", each named by the offset of its first
// byte in the container's whole output. The writer appends to the newest; past the cap
// it starts the next one and removes the one before the previous, so at most two are
// kept and the output costs at most twice the cap on disk. Readers never lock: a
// rotation shows up as the oldest file going away.
//
// Thread-safety: a LogWriter belongs to one thread; ReadLogFiles and ResumeLogWriter may
// be called from any thread.
#ifndef PETREL_LIB_UTIL_LOG_FILES_H_
#define PETREL_LIB_UTIL_LOG_FILES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "petrel/runtime.h"
#include "petrel/status.h"

namespace petrel::internal {

inline constexpr char kLogPrefix[] = "log.";  // log.<20-digit base offset>

// The name (no directory) of the file whose first byte is at offset `base`:
// "log.00000000000000000123".
std::string LogFileName(int64_t base);

// The log files of `dir`, oldest first: (base offset, size) each. Names that are not
// kLogPrefix + 20 digits are ignored. NotFound when `dir` does not exist.
Result<std::vector<std::pair<int64_t, int64_t>>> ListLogFiles(const std::string& dir);

// What ContainerRuntime::Logs answers from the files of `dir`: the bytes from
// options.since_offset (clamped into what is kept; -1: the last limit_bytes), at most
// limit_bytes, as one run of bytes even when a rotation happens meanwhile. An empty
// chunk when there are no files yet. NotFound when `dir` does not exist.
Result<LogChunk> ReadLogFiles(const std::string& dir, const LogOptions& options);

// Writes what it can of p[0..n) to `fd`, again after EINTR: the bytes written, fewer
// than n after an error (errno says which). ASYNC-SIGNAL-SAFE.
size_t RawWrite(int fd, const char* p, size_t n);

// The two path buffers a LogWriter writes its files' digits into, made before it runs
// (before fork() in the shim): "<dir>/log.<20 digits>" twice.
struct LogPaths {
  std::string a, b;
  size_t digits_at = 0;  // where the 20 digits start in a and b
};
LogPaths MakeLogPaths(const std::string& dir);

// Appends output to the files: past the cap, starts the next one (named by its base
// offset) and drops the one before the previous. Output that cannot be written (a full
// disk) is counted, and once writes work again the log says so first:
// "<lost_prefix>1234 bytes of output lost: no space left on device".
// ASYNC-SIGNAL-SAFE (Open, Write, Rotate): raw system calls over the buffers of
// LogPaths, for the shim between fork() and exit.
struct LogWriter {
  char* cur_path;   // points into one of LogPaths' two buffers
  char* prev_path;  // the other
  size_t digits_at;
  int64_t max_bytes;                          // per file; > 0
  const char* lost_prefix = "petrel-shim: ";  // starts the line about lost bytes
  int fd = -1;
  int64_t base = 0, size = 0, prev_base = -1;
  uint64_t lost = 0;  // bytes not written since the last report
  int lost_errno = 0;
  bool mid_line = false;  // the last byte written was not a newline

  // Opens (creates) the current file; fd stays -1 when that fails (errno says why), and
  // the next Write tries again.
  void Open();
  // Never lets a file grow past the cap: a big write is split across files.
  void Write(const char* data, size_t n);
  void Close();

 private:
  void Lose(size_t n);
  void Append(const char* data, size_t n);
  bool ReportLost();
  void Rotate();
};

// Points `w` (before its Open) at the files already in `dir`, so that a writer started
// again for the same output (a restarted logger) continues the newest file and offsets
// instead of writing over them. Nothing changes when there are none. Not
// async-signal-safe.
Status ResumeLogWriter(const std::string& dir, LogWriter* w);

}  // namespace petrel::internal

#endif  // PETREL_LIB_UTIL_LOG_FILES_H_
