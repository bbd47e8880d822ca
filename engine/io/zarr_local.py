"""zarr's LocalStore, minus one temporary file.

Creating an array makes sure its parent groups exist: zarr writes each parent's metadata
to a temporary ``zarr.<hex>.partial`` file beside it, then finds the parent there and
removes the file. A run killed in that instant leaves the empty file in the user's store
(seen in ``test_a_killed_write_leaves_the_rat_as_it_was``). Here metadata that already
exists is not written at all. Imported only where zarr is (it imports zarr).
"""

from zarr.storage import LocalStore


class ParentsKeptLocalStore(LocalStore):
    """A LocalStore whose ``set_if_not_exists`` writes nothing when the key exists."""

    async def set_if_not_exists(self, key, value):
        if not await self.exists(key):
            await super().set_if_not_exists(key, value)
