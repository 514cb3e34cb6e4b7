"""Old import path of ``maskgen.metrics.evaluate`` (reference statistics and scoring of sample
sets), kept for scripts that import it from here; new code imports ``maskgen.metrics.evaluate``."""

from .metrics.evaluate import (  # noqa: F401
    absolute_network,
    check_reference_network,
    dataset_images,
    evaluate_images,
    image_fd,
    is_classifier,
    load_network,
    load_reference_network,
    load_samples,
    open_reference_data,
    read_images,
    reference_network,
    reference_stats,
    sample_size_note,
)
