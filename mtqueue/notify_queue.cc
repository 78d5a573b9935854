// Out-of-line pieces of NotifyQueue<T> that do not depend on T: the fatal
// paths, kept here so the header does not pull in stdio.
#include "mtqueue/notify_queue.h"

#include <stdio.h>
#include <stdlib.h>

#include <string>

namespace eventide {
namespace mtqueue_internal {

void DieOnNotifierError(const char* what, const absl::Status& status) {
  // The queue owns its fds and only ever writes/reads them non-blocking, so
  // any error but EAGAIN/EINTR (handled by FdNotifier) means the fd was
  // closed or replaced behind our back. Continuing would lose wake-ups.
  const std::string text = status.ToString();
  fprintf(stderr, "eventide::NotifyQueue: %s failed: %s\n", what, text.c_str());
  abort();
}

void DieOnMisuse(const char* message) {
  fprintf(stderr, "eventide::NotifyQueue: %s\n", message);
  abort();
}

}  // namespace mtqueue_internal
}  // namespace eventide
