#include <cmath>
#include <limits>
#include <stdexcept>

#include "gensamp/model.hpp"
#include "stop_check.hpp"

namespace gensamp {

namespace {
struct MixWs final : Workspace {
  std::vector<double> x, diff, m, logp;
};
// Per level: diagonal -> inverse variances [K*d]; full -> Cholesky factors [K*d*d] (lower).
struct MixLevels final : Levels {
  std::vector<std::vector<double>> prec;
  std::vector<std::vector<double>> logdet;  // per level, [K]
};
}  // namespace

Mixture::Mixture(std::vector<double> weights, std::vector<double> means, int d,
                 std::vector<double> variances, std::vector<double> covs)
    : K_(int(weights.size())),
      d_(d),
      full_(!covs.empty()),
      means_(std::move(means)),
      vars_(std::move(variances)),
      covs_(std::move(covs)) {
  if (K_ < 1 || d_ < 1) throw std::invalid_argument("mixture needs K >= 1 components and d >= 1");
  if (means_.size() != size_t(K_) * d_) throw std::invalid_argument("means must be [K, d]");
  if (full_ == !vars_.empty())
    throw std::invalid_argument("give exactly one of variances [K, d] or covariances [K, d, d]");
  if (!full_ && vars_.size() != size_t(K_) * d_)
    throw std::invalid_argument("variances must be [K, d]");
  if (full_ && covs_.size() != size_t(K_) * d_ * d_)
    throw std::invalid_argument("covariances must be [K, d, d]");
  logw_.reserve(weights.size());
  double tot = 0;
  for (double w : weights) {
    if (!(w > 0) || !std::isfinite(w)) throw std::invalid_argument("weights must be positive");
    tot += w;
  }
  for (double w : weights) logw_.push_back(std::log(w / tot));
}

uint64_t Mixture::bytes(int K, int d, bool full) {
  const uint64_t kd = sat_mul(uint64_t(K), uint64_t(d));
  const uint64_t per_k = block_bytes(uint64_t(K), sizeof(double));  // the weights, logw_
  return sat_add(sat_add(sat_add(per_k, per_k), block_bytes(kd, sizeof(double))),
                 block_bytes(full ? sat_mul(kd, uint64_t(d)) : kd, sizeof(double)));
}

std::unique_ptr<Levels> Mixture::prepare(const std::vector<double>& sigmas,
                                         const StopFn& stop) const {
  auto lv = std::make_unique<MixLevels>();
  auto& prec_ = lv->prec;
  auto& logdet_ = lv->logdet;
  prec_.resize(sigmas.size());
  logdet_.resize(sigmas.size());
  StopCheck stopped(stop);
  for (size_t l = 0; l < sigmas.size(); ++l) {
    const double s2 = sigmas[l] * sigmas[l];
    auto& P = prec_[l];
    logdet_[l].resize(size_t(K_));
    if (!full_) {
      if (stopped(uint64_t(K_) * uint64_t(d_))) return nullptr;
      P.resize(size_t(K_) * d_);
      for (int k = 0; k < K_; ++k) {
        double ld = 0;
        for (int i = 0; i < d_; ++i) {
          const double v = vars_[size_t(k) * d_ + i] + s2;
          P[size_t(k) * d_ + i] = 1.0 / v;
          ld += std::log(v);
        }
        logdet_[l][k] = ld;
      }
      continue;
    }
    // Cholesky factor of Sigma_k + sigma^2 I, lower triangle, row-major. At d = 1024 one factor
    // takes a third of a second, so the stop check runs per row.
    P.assign(size_t(K_) * d_ * d_, 0.0);
    for (int k = 0; k < K_; ++k) {
      const double* C = covs_.data() + size_t(k) * d_ * d_;
      double* Lk = P.data() + size_t(k) * d_ * d_;
      double ld = 0;
      for (int i = 0; i < d_; ++i) {
        if (stopped(uint64_t(i + 1) * uint64_t(i + 1) / 2)) return nullptr;
        for (int j = 0; j <= i; ++j) {
          double acc = C[i * d_ + j] + (i == j ? s2 : 0.0);
          for (int p = 0; p < j; ++p) acc -= Lk[i * d_ + p] * Lk[j * d_ + p];
          if (i == j) {
            if (!(acc > 0)) throw std::invalid_argument("covariance is not positive definite");
            Lk[i * d_ + i] = std::sqrt(acc);
            ld += 2.0 * std::log(Lk[i * d_ + i]);
          } else {
            Lk[i * d_ + j] = acc / Lk[j * d_ + j];
          }
        }
      }
      logdet_[l][k] = ld;
    }
  }
  return lv;
}

uint64_t Mixture::levels_bytes(uint64_t levels) const {
  const uint64_t kd = sat_mul(uint64_t(K_), uint64_t(d_));
  const uint64_t per_level =
      sat_add(block_bytes(full_ ? sat_mul(kd, uint64_t(d_)) : kd, sizeof(double)),
              block_bytes(uint64_t(K_), sizeof(double)));
  const uint64_t outer = block_bytes(levels, sizeof(std::vector<double>));  // prec, logdet
  return sat_add(sat_add(block_bytes(1, sizeof(MixLevels)), sat_add(outer, outer)),
                 sat_mul(levels, per_level));
}

std::unique_ptr<Workspace> Mixture::workspace(int) const {
  auto ws = std::make_unique<MixWs>();
  ws->x.resize(d_);
  ws->diff.resize(d_);
  ws->m.resize(size_t(K_) * d_);
  ws->logp.resize(K_);
  return ws;
}

uint64_t Mixture::workspace_bytes(int) const {
  const uint64_t vec_d = block_bytes(uint64_t(d_), sizeof(double));
  return sat_add(sat_add(block_bytes(1, sizeof(MixWs)), sat_add(vec_d, vec_d)),
                 sat_add(block_bytes(uint64_t(K_) * uint64_t(d_), sizeof(double)),
                         block_bytes(uint64_t(K_), sizeof(double))));
}

// score(x) = -sum_k r_k(x) P_k (x - mu_k), r = softmax_k(log w_k + log N(x; mu_k, S_k)),
// evaluated in double with a max-shifted softmax so far-away chains get a finite score.
void Mixture::score(const float* xt, int width, const Levels& lvb, int level, float* out,
                    Workspace& wsb) const {
  auto& ws = static_cast<MixWs&>(wsb);
  const auto& lv = static_cast<const MixLevels&>(lvb);
  const auto& P = lv.prec[level];
  const auto& LD = lv.logdet[level];
  for (int c = 0; c < width; ++c) {
    for (int i = 0; i < d_; ++i) ws.x[i] = xt[long(i) * width + c];
    double mx = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < K_; ++k) {
      const double* mu = means_.data() + size_t(k) * d_;
      double* m = ws.m.data() + size_t(k) * d_;
      double quad = 0;
      if (!full_) {
        const double* p = P.data() + size_t(k) * d_;
        for (int i = 0; i < d_; ++i) {
          const double df = ws.x[i] - mu[i];
          m[i] = df * p[i];
          quad += df * m[i];
        }
      } else {
        const double* Lk = P.data() + size_t(k) * d_ * d_;
        double* y = ws.diff.data();
        for (int i = 0; i < d_; ++i) {  // L y = x - mu
          double acc = ws.x[i] - mu[i];
          for (int p = 0; p < i; ++p) acc -= Lk[i * d_ + p] * y[p];
          y[i] = acc / Lk[i * d_ + i];
          quad += y[i] * y[i];
        }
        for (int i = d_ - 1; i >= 0; --i) {  // L^T m = y
          double acc = y[i];
          for (int p = i + 1; p < d_; ++p) acc -= Lk[p * d_ + i] * m[p];
          m[i] = acc / Lk[i * d_ + i];
        }
      }
      ws.logp[k] = logw_[k] - 0.5 * LD[k] - 0.5 * quad;
      if (ws.logp[k] > mx) mx = ws.logp[k];
    }
    double z = 0;
    for (int k = 0; k < K_; ++k) z += (ws.logp[k] = std::exp(ws.logp[k] - mx));
    for (int i = 0; i < d_; ++i) {
      double s = 0;
      for (int k = 0; k < K_; ++k) s -= ws.logp[k] * ws.m[size_t(k) * d_ + i];
      out[long(i) * width + c] = float(s / z);
    }
  }
}

}  // namespace gensamp
