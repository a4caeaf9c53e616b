# Loaded automatically by Python when this directory is on PYTHONPATH (only while
# infra/build-mediasoup.sh runs gyp). mediasoup 3.8.4 bundles an old gyp that
# still uses the ABC aliases removed from `collections` in Python 3.10
# (collections.MutableSet, collections.Mapping, ...). Put them back, pointing at
# collections.abc, so the bundled gyp runs unmodified on Debian's python3.
import collections
import collections.abc

for _name in (
    'Callable', 'Container', 'Hashable', 'ItemsView', 'Iterable', 'Iterator',
    'KeysView', 'Mapping', 'MappingView', 'MutableMapping', 'MutableSequence',
    'MutableSet', 'Sequence', 'Set', 'Sized', 'ValuesView',
):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
