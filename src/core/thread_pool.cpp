// A persistent pool: thread_count() - 1 workers plus the calling thread share each
// parallel_for. Workers sleep on a condition variable between jobs, so an idle runtime costs
// nothing. One job runs at a time; a parallel_for issued from inside a job (by a worker or by
// the caller while it takes part) runs inline, which keeps nesting deadlock-free.
#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/env.h"
#include "core/error.h"

namespace dm {
namespace {

int threads_from_env() {
  const unsigned hw = std::thread::hardware_concurrency();
  return int(env_int("thread_pool", "DM_THREADS", 1, 4096, hw == 0 ? 1 : long(hw)));
}

// True while this thread executes part of a job: nested parallel_for calls then run inline.
thread_local bool t_in_job = false;

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int threads() const { return threads_; }

  void run(int64_t n, int64_t tasks, const std::function<void(int64_t, int64_t)>& fn) {
    // One job at a time: a second outside caller waits for the first to finish.
    std::lock_guard<std::mutex> job_lock(job_mu_);
    Job job{&fn, n, tasks};
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      ++generation_;
      workers_done_ = 0;
    }
    wake_.notify_all();
    t_in_job = true;
    work_on(job);
    t_in_job = false;
    {
      // The job lives on this stack frame: wait until every worker has let go of it.
      std::unique_lock<std::mutex> lock(mu_);
      done_.wait(lock, [&] { return workers_done_ == int(workers_.size()); });
      job_ = nullptr;
    }
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  struct Job {
    Job(const std::function<void(int64_t, int64_t)>* f, int64_t n_, int64_t t)
        : fn(f), n(n_), tasks(t) {}
    const std::function<void(int64_t, int64_t)>* fn;
    int64_t n;
    int64_t tasks;
    std::atomic<int64_t> next{0};
    std::mutex error_mu;
    std::exception_ptr error;
  };

  // Task i covers [n*i/tasks, n*(i+1)/tasks): contiguous and balanced to within one index.
  static void work_on(Job& job) {
    for (;;) {
      const int64_t i = job.next.fetch_add(1);
      if (i >= job.tasks) return;
      const int64_t begin = job.n * i / job.tasks;
      const int64_t end = job.n * (i + 1) / job.tasks;
      try {
        (*job.fn)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(job.error_mu);
        if (!job.error) job.error = std::current_exception();
      }
    }
  }

  void worker_loop() {
    t_in_job = true;  // a worker only ever runs job code
    uint64_t seen = 0;
    for (;;) {
      Job* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      work_on(*job);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++workers_done_;
      }
      done_.notify_one();
    }
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::mutex job_mu_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  Job* job_ = nullptr;
  uint64_t generation_ = 0;
  int workers_done_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  static Pool p(threads_from_env());
  return p;
}

}  // namespace

int thread_count() { return pool().threads(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t pieces = (n + grain - 1) / grain;
  if (t_in_job || pieces <= 1) {
    fn(0, n);
    return;
  }
  Pool& p = pool();
  const int64_t tasks = std::min<int64_t>(pieces, p.threads());
  if (tasks <= 1) {
    fn(0, n);
    return;
  }
  p.run(n, tasks, fn);
}

}  // namespace dm
