"""PCoreSet inside the active-learning frameworks people already use.

One module per framework; each imports its framework when it is imported,
so ``import pcoreset`` never needs them. Install the versions the tests ran
with by ``pip install 'pcoreset[integrations]'``.

============================================  ==============================  =====================================
module                                        framework                       what it gives
============================================  ==============================  =====================================
:mod:`pcoreset.integrations.small_text`       small-text 1.4                  ``PCoreSet``, a ``QueryStrategy``
:mod:`pcoreset.integrations.skactiveml`       scikit-activeml 1.0             ``PCoreSet``, a pool query strategy
:mod:`pcoreset.integrations.modal`            modAL 0.4 (``modAL-python``)    ``pcoreset_sampling``, a query strategy
============================================  ==============================  =====================================

Every adapter selects with `pcoreset.select` on the classifier's
probabilities, with the labeled samples as the initial centers, returns
indices in its framework's numbering, and forwards ``backend``,
``from_logits`` and ``temperature``.
"""
