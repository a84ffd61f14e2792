"""Where to put the levels of a non-uniform quantizer: the given building block of notebook 05's exercise (a).

:func:`companded_levels` takes the values of one tensor (float32, flat) and
returns ``num_levels`` sorted levels (float32): spaced by the cube root of the
values' density, then refined by Lloyd steps. It is graph ops only, so a stage
can call it inside a TFF computation. The stage that uses it,
:class:`helpers.exercises.stages.NonUniformQuantizationEncodingStage`, is the exercise.
"""
import tensorflow as tf


@tf.autograph.experimental.do_not_convert
def companded_levels(flat, num_levels, lloyd_iterations):
    """``num_levels`` sorted levels for the values ``flat``: cube-root density, then Lloyd steps.

    At high resolution the mean squared error is smallest when the density of
    levels follows the cube root of the density of the values (Panter and
    Dite, 1951). Levels at plain quantiles follow the density itself: too
    many levels in the bulk, too few in the tails, which at 8 bits is worse
    than uniform. So: a histogram of ``16 * num_levels`` bins over [min, max],
    its cube root as a new density, and level ``i`` at the
    ``(i + 0.5) / num_levels`` quantile of that density (linear within a
    bin). Each Lloyd step then moves every level to the mean of the values
    nearest to it, which never increases the error. With the values sorted
    once, a level's values are a contiguous run (found with
    ``searchsorted``) and its mean comes from prefix sums, so a Lloyd step
    costs ``num_levels`` binary searches, not a pass over the data.
    """
    sorted_x = tf.sort(flat)
    n = tf.size(flat)
    low, high = sorted_x[0], sorted_x[-1]
    spread = high > low
    safe_high = tf.where(spread, high, low + 1)
    bins = 16 * num_levels
    histogram = tf.histogram_fixed_width(sorted_x, tf.stack([low, safe_high]), nbins=bins)
    cube_root = tf.pow(tf.cast(histogram, tf.float64), 1.0 / 3.0)
    cdf = tf.concat([tf.zeros([1], tf.float64), tf.cumsum(cube_root)], 0)
    cdf = cdf / cdf[-1]
    edges = tf.cast(low, tf.float64) + tf.cast(safe_high - low, tf.float64) * tf.linspace(
        tf.constant(0.0, tf.float64), 1.0, bins + 1)
    targets = (tf.range(num_levels, dtype=tf.float64) + 0.5) / num_levels
    bin_index = tf.clip_by_value(tf.searchsorted(cdf, targets, side="right") - 1, 0, bins - 1)
    below, above = tf.gather(cdf, bin_index), tf.gather(cdf, bin_index + 1)
    fraction = tf.math.divide_no_nan(targets - below, above - below)
    left = tf.gather(edges, bin_index)
    levels = tf.cast(left + fraction * (tf.gather(edges, bin_index + 1) - left), flat.dtype)
    levels = tf.where(spread, levels, tf.fill([num_levels], low))
    prefix = tf.concat([tf.zeros([1], tf.float64), tf.cumsum(tf.cast(sorted_x, tf.float64))], 0)
    for _ in range(lloyd_iterations):
        thresholds = (levels[:-1] + levels[1:]) / 2
        bounds = tf.concat([[0], tf.searchsorted(sorted_x, thresholds, side="right", out_type=tf.int32),
                            [n]], 0)
        first, last = bounds[:-1], bounds[1:]
        count = tf.cast(last - first, tf.float64)
        mean = (tf.gather(prefix, last) - tf.gather(prefix, first)) / tf.maximum(count, 1.0)
        levels = tf.where(count > 0, tf.cast(mean, flat.dtype), levels)
    return levels
