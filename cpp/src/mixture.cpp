#include <cmath>
#include <limits>
#include <stdexcept>

#include "gensamp/model.hpp"
#include "stop_check.hpp"

namespace gensamp {

namespace {
struct MixWs final : Workspace {
  std::vector<double> x, diff, m, logp, s;
  double z = 0;
};
// Per level: diagonal -> inverse variances [K*d]; full -> Cholesky factors [K*d*d] (lower).
struct MixLevels final : Levels {
  std::vector<std::vector<double>> prec;
  std::vector<std::vector<double>> logdet;  // per level, [K]
  std::vector<std::vector<double>> trace;   // per level, [K]: tr P_k (prepare_div() only)
  // A column of L_k^-1 while the traces of full covariances are computed. Kept with the
  // tables (d doubles) so that what they hold is what they needed at their largest.
  std::vector<double> column;
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
  return prepare_levels(sigmas, stop, false);
}

std::unique_ptr<Levels> Mixture::prepare_div(const std::vector<double>& sigmas,
                                             const StopFn& stop) const {
  return prepare_levels(sigmas, stop, true);
}

std::unique_ptr<Levels> Mixture::prepare_levels(const std::vector<double>& sigmas,
                                                const StopFn& stop, bool traces) const {
  auto lv = std::make_unique<MixLevels>();
  auto& prec_ = lv->prec;
  auto& logdet_ = lv->logdet;
  prec_.resize(sigmas.size());
  logdet_.resize(sigmas.size());
  if (traces) lv->trace.resize(sigmas.size());
  std::vector<double>& y = lv->column;
  if (traces && full_) y.resize(size_t(d_));
  StopCheck stopped(stop);
  for (size_t l = 0; l < sigmas.size(); ++l) {
    const double s2 = sigmas[l] * sigmas[l];
    auto& P = prec_[l];
    logdet_[l].resize(size_t(K_));
    if (traces) lv->trace[l].assign(size_t(K_), 0.0);
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
        if (traces)
          for (int i = 0; i < d_; ++i) lv->trace[l][k] += P[size_t(k) * d_ + i];
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
      if (traces) {
        // tr P_k = ||L_k^-1||_F^2, column by column: L y = e_j has y_i = 0 for i < j.
        double tr = 0;
        for (int j = 0; j < d_; ++j) {
          if (stopped(uint64_t(d_ - j) * uint64_t(d_ - j) / 2)) return nullptr;
          for (int i = j; i < d_; ++i) {
            double acc = i == j ? 1.0 : 0.0;
            for (int p = j; p < i; ++p) acc -= Lk[i * d_ + p] * y[p];
            y[i] = acc / Lk[i * d_ + i];
            tr += y[i] * y[i];
          }
        }
        lv->trace[l][k] = tr;
      }
    }
  }
  return lv;
}

uint64_t Mixture::levels_div_bytes(uint64_t levels) const {
  // the traces, and the column of L^-1 they are computed from
  const uint64_t traces = sat_add(block_bytes(levels, sizeof(std::vector<double>)),
                                  sat_mul(levels, block_bytes(uint64_t(K_), sizeof(double))));
  return sat_add(sat_add(levels_bytes(levels), traces),
                 full_ ? block_bytes(uint64_t(d_), sizeof(double)) : 0);
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
  ws->s.resize(d_);
  return ws;
}

uint64_t Mixture::workspace_bytes(int) const {
  const uint64_t vec_d = block_bytes(uint64_t(d_), sizeof(double));
  return sat_add(sat_add(block_bytes(1, sizeof(MixWs)), sat_add(sat_add(vec_d, vec_d), vec_d)),
                 sat_add(block_bytes(uint64_t(K_) * uint64_t(d_), sizeof(double)),
                         block_bytes(uint64_t(K_), sizeof(double))));
}

// score(x) = -sum_k r_k(x) P_k (x - mu_k), r = softmax_k(log w_k + log N(x; mu_k, S_k)),
// evaluated in double with a max-shifted softmax so far-away chains get a finite score.
// Leaves P_k (x - mu_k) in ws.m, the unnormalised weights in ws.logp and their sum in ws.z.
void Mixture::lane(const float* xt, int width, int c, const Levels& lvb, int level,
                   Workspace& wsb) const {
  auto& ws = static_cast<MixWs&>(wsb);
  const auto& lv = static_cast<const MixLevels&>(lvb);
  const auto& P = lv.prec[level];
  const auto& LD = lv.logdet[level];
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
  ws.z = z;
  for (int i = 0; i < d_; ++i) {
    double s = 0;
    for (int k = 0; k < K_; ++k) s -= ws.logp[k] * ws.m[size_t(k) * d_ + i];
    ws.s[i] = s / z;
  }
}

void Mixture::score(const float* xt, int width, const Levels& lv, int level, float* out,
                    Workspace& wsb) const {
  auto& ws = static_cast<MixWs&>(wsb);
  for (int c = 0; c < width; ++c) {
    lane(xt, width, c, lv, level, ws);
    for (int i = 0; i < d_; ++i) out[long(i) * width + c] = float(ws.s[i]);
  }
}

std::unique_ptr<Workspace> Mixture::div_workspace(int width, int) const { return workspace(width); }

uint64_t Mixture::div_workspace_bytes(int width, int) const { return workspace_bytes(width); }

// With g_k = -m_k, the Hessian of log p is sum_k r_k (m_k m_k^T - P_k) - s s^T: its trace is
// sum_k r_k (|m_k|^2 - tr P_k) - |s|^2, its quadratic form in v is
// sum_k r_k ((m_k . v)^2 - v^T P_k v) - (s . v)^2, with v^T P_k v = |L_k^-1 v|^2 when full.
void Mixture::score_div(const float* xt, int width, const Levels& lvb, int level, const float* v,
                        int probes, float* out, double* div, Workspace& wsb) const {
  auto& ws = static_cast<MixWs&>(wsb);
  const auto& lv = static_cast<const MixLevels&>(lvb);
  const auto& P = lv.prec[level];
  for (int c = 0; c < width; ++c) {
    lane(xt, width, c, lv, level, ws);
    for (int i = 0; i < d_; ++i) out[long(i) * width + c] = float(ws.s[i]);
    double acc = 0;
    if (probes == 0) {
      const auto& tr = lv.trace[level];
      for (int k = 0; k < K_; ++k) {
        const double* m = ws.m.data() + size_t(k) * d_;
        double mm = 0;
        for (int i = 0; i < d_; ++i) mm += m[i] * m[i];
        acc += ws.logp[k] / ws.z * (mm - tr[k]);
      }
      double ss = 0;
      for (int i = 0; i < d_; ++i) ss += ws.s[i] * ws.s[i];
      div[c] = acc - ss;
      continue;
    }
    const long cols = long(probes) * width;
    for (int p = 0; p < probes; ++p) {
      for (int i = 0; i < d_; ++i) ws.x[i] = v[i * cols + long(p) * width + c];
      double q = 0;
      for (int k = 0; k < K_; ++k) {
        const double* m = ws.m.data() + size_t(k) * d_;
        double mv = 0, vpv = 0;
        for (int i = 0; i < d_; ++i) mv += m[i] * ws.x[i];
        if (!full_) {
          const double* pk = P.data() + size_t(k) * d_;
          for (int i = 0; i < d_; ++i) vpv += pk[i] * ws.x[i] * ws.x[i];
        } else {
          const double* Lk = P.data() + size_t(k) * d_ * d_;
          double* y = ws.diff.data();
          for (int i = 0; i < d_; ++i) {  // L y = v
            double a = ws.x[i];
            for (int r = 0; r < i; ++r) a -= Lk[i * d_ + r] * y[r];
            y[i] = a / Lk[i * d_ + i];
            vpv += y[i] * y[i];
          }
        }
        q += ws.logp[k] / ws.z * (mv * mv - vpv);
      }
      double sv = 0;
      for (int i = 0; i < d_; ++i) sv += ws.s[i] * ws.x[i];
      acc += q - sv * sv;
    }
    div[c] = acc / probes;
  }
}

}  // namespace gensamp
