#include "lib/util/log_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "lib/util/fs.h"
#include "lib/util/strings.h"

namespace petrel::internal {

std::string LogFileName(int64_t base) {
  char digits[24];
  FormatDecimal(static_cast<uint64_t>(base), digits, 20);
  return std::string(kLogPrefix) + digits;
}

Result<std::vector<std::pair<int64_t, int64_t>>> ListLogFiles(const std::string& dir) {
  PETREL_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDir(dir));
  const size_t prefix = strlen(kLogPrefix);
  std::vector<std::pair<int64_t, int64_t>> files;
  for (const DirEntry& e : entries) {
    const std::string& name = e.name;
    if (name.rfind(kLogPrefix, 0) != 0 || name.size() != prefix + 20) continue;
    struct stat st;
    if (stat((dir + "/" + name).c_str(), &st) != 0) continue;
    files.emplace_back(atoll(name.c_str() + prefix), st.st_size);
  }
  std::sort(files.begin(), files.end());
  return files;
}

Result<LogChunk> ReadLogFiles(const std::string& dir, const LogOptions& options) {
  PETREL_ASSIGN_OR_RETURN(auto files, ListLogFiles(dir));
  LogChunk chunk;
  if (files.empty()) return chunk;
  const int64_t oldest = files.front().first;
  const int64_t end = files.back().first + files.back().second;
  const int64_t limit = static_cast<int64_t>(options.limit_bytes);
  int64_t start = options.since_offset < 0 ? std::max(oldest, end - limit)
                                           : std::clamp(options.since_offset, oldest, end);
  chunk.start_offset = start;
  int64_t want = std::min(limit, end - start);
  for (const auto& [base, size] : files) {
    if (want <= 0) break;
    if (start >= base + size) continue;
    UniqueFd fd(open((dir + "/" + LogFileName(base)).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      if (!chunk.data.empty()) break;  // what was read stays one run of bytes
      continue;                        // rotated away just now: from the next file on
    }
    if (chunk.data.empty()) chunk.start_offset = start = std::max(start, base);
    std::string buf(static_cast<size_t>(std::min(want, base + size - start)), '\0');
    ssize_t n = pread(fd.get(), buf.data(), buf.size(), start - base);
    if (n <= 0) break;
    chunk.data.append(buf.data(), static_cast<size_t>(n));
    start += n;
    want -= n;
  }
  chunk.end_offset = chunk.start_offset + static_cast<int64_t>(chunk.data.size());
  return chunk;
}

size_t RawWrite(int fd, const char* p, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      break;
    }
    done += static_cast<size_t>(w);
  }
  return done;
}

LogPaths MakeLogPaths(const std::string& dir) {
  LogPaths paths;
  const std::string d = dir + "/";
  paths.a = d + LogFileName(0);
  paths.b = paths.a;
  paths.digits_at = d.size() + strlen(kLogPrefix);
  return paths;
}

void LogWriter::Open() {
  FormatDecimal(static_cast<uint64_t>(base), cur_path + digits_at, 20);
  fd = open(cur_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

void LogWriter::Close() {
  if (fd >= 0) close(fd);
  fd = -1;
}

void LogWriter::Lose(size_t n) {
  lost += n;
  lost_errno = errno;
}

void LogWriter::Write(const char* data, size_t n) {
  if (fd < 0) Open();  // a full disk refused the file last time
  if (fd < 0) return Lose(n);
  if (lost > 0 && !ReportLost()) return Lose(n);
  Append(data, n);
}

void LogWriter::Append(const char* data, size_t n) {
  while (n > 0 && fd >= 0) {
    size_t room = static_cast<size_t>(max_bytes - size);
    size_t part = n < room ? n : room;
    const size_t written = RawWrite(fd, data, part);
    size += static_cast<int64_t>(written);
    if (written > 0) mid_line = data[written - 1] != '\n';
    if (written < part) return Lose(n - written);
    data += part;
    n -= part;
    if (size >= max_bytes) Rotate();
  }
  if (n > 0) Lose(n);
}

// Writes the line about the bytes lost, whole or not at all: true when written.
bool LogWriter::ReportLost() {
  char line[128];
  size_t k = 0;
  if (mid_line) line[k++] = '\n';  // the line the disk cut short ends here
  static constexpr char kMid[] = " bytes of output lost: ";
  const size_t prefix_len = strnlen(lost_prefix, 32);
  memcpy(line + k, lost_prefix, prefix_len);
  k += prefix_len;
  k += FormatDecimal(lost, line + k);
  memcpy(line + k, kMid, sizeof(kMid) - 1);
  k += sizeof(kMid) - 1;
  const char* why = lost_errno == ENOSPC   ? "no space left on device"
                    : lost_errno == EDQUOT ? "disk quota exceeded"
                                           : "write error";
  const size_t why_len = strlen(why);
  memcpy(line + k, why, why_len);
  k += why_len;
  line[k++] = '\n';
  // Probe with the line itself: a partial line is cut back off the file.
  const off_t end = lseek(fd, 0, SEEK_END);
  const size_t written = RawWrite(fd, line, k);
  if (written < k) {
    const int err = errno;
    if (written > 0 && end >= 0) (void)!ftruncate(fd, end);
    errno = err;
    return false;
  }
  size += static_cast<int64_t>(k);
  lost = 0;
  mid_line = false;
  if (size >= max_bytes) Rotate();
  return fd >= 0;
}

void LogWriter::Rotate() {
  close(fd);
  if (prev_base >= 0) unlink(prev_path);  // prev_path still names the older file
  char* t = prev_path;
  prev_path = cur_path;
  cur_path = t;
  prev_base = base;
  base += size;
  size = 0;
  Open();
}

Status ResumeLogWriter(const std::string& dir, LogWriter* w) {
  PETREL_ASSIGN_OR_RETURN(auto files, ListLogFiles(dir));
  if (files.empty()) return Status::OK();
  // Older files than the two newest are left over from a rotation cut short: gone.
  for (size_t i = 0; i + 2 < files.size(); i++) {
    unlink((dir + "/" + LogFileName(files[i].first)).c_str());
  }
  w->base = files.back().first;
  w->size = files.back().second;
  w->prev_base = files.size() >= 2 ? files[files.size() - 2].first : -1;
  if (w->prev_base >= 0) {
    FormatDecimal(static_cast<uint64_t>(w->prev_base), w->prev_path + w->digits_at, 20);
  }
  // Whether the newest file ends mid-line (its writer was killed), for the line about
  // lost bytes.
  if (w->size > 0) {
    UniqueFd fd(open((dir + "/" + LogFileName(w->base)).c_str(), O_RDONLY | O_CLOEXEC));
    char last = '\n';
    if (fd.valid() && pread(fd.get(), &last, 1, w->size - 1) == 1) w->mid_line = last != '\n';
  }
  // Full already (a smaller cap than before, or a writer killed before it rotated): the
  // next byte starts a new file, as after a Rotate.
  if (w->size >= w->max_bytes) {
    if (w->prev_base >= 0) unlink(w->prev_path);
    FormatDecimal(static_cast<uint64_t>(w->base), w->prev_path + w->digits_at, 20);
    w->prev_base = w->base;
    w->base += w->size;
    w->size = 0;
    w->mid_line = false;
  }
  return Status::OK();
}

}  // namespace petrel::internal
