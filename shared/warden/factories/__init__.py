"""Estimator factories ``warden.yaml`` may name: ``factory: warden.factories.MODULE:FUNCTION``.

The only package a factory may come from (``warden.config.FACTORY_PACKAGES``): it ships in every
function bundle, and what is here has been reviewed like the rest of the code — a config edit
alone cannot make Warden run anything else (``factory: os:system`` is refused at load). Add a
module with a public function returning an unfitted scikit-learn estimator or pipeline; it may
import scikit-learn inside the function to keep cold starts light.
"""

__all__: list[str] = []
