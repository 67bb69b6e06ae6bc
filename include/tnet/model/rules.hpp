// tnet/model/rules.hpp: the fusion rules each mode's plan is made with (model/plan.hpp), the
// first that matches at a layer winning. Each rule is a file of model/rules/.
#pragma once

#include "plan.hpp"
#include "rules/activation_in_epilogue.hpp"
#include "rules/add_in_epilogue.hpp"
#include "rules/fold_epilogue.hpp"
#include "rules/normalise_then_pool.hpp"
#include "rules/pointwise_then_depthwise.hpp"
#include "rules/pool_in_forward.hpp"
#include "rules/relu_gradient.hpp"

namespace tnet {

/// Inference (Mode::infer).
using InferenceRules =
    RuleList<rules::AddInEpilogue<Mode::infer>, rules::PoolInForward, rules::PointwiseThenDepthwise, rules::FoldEpilogue>;
/// Training and calibration (Mode::train, Mode::calibrate); backward also applies a ReLU's
/// gradient in the step after it where it can (rules/relu_gradient.hpp).
using TrainingRules = RuleList<rules::NormaliseThenPool, rules::AddInEpilogue<Mode::train>, rules::ActivationInEpilogue>;

}  // namespace tnet
