"""The AWS emulator of the tests: moto's server, without two costs that grow with the run.

scripts/test-env.sh starts this instead of `moto_server` (same arguments). Answers are
moto's own; two of its internals are replaced:

1. moto keeps a reference to every model object it ever creates (`BaseModel.__new__`
   appends each to a class-level list, for its dashboard), so nothing is freed: dropped
   tables, replaced items, and the copies of (2) stay in memory for the life of the
   server. One emulator serves a whole `make test`, and it grew past 16 GB. Here objects
   are not tracked (the dashboard lists nothing; the tests never open it).
2. `TransactWriteItems` deep-copies the whole table once per item of the transaction, to
   roll back a cancelled one: a 10-item transaction on a 1,000-item table took 1.5 s. Here
   the items the transaction names are copied before it runs, and put back if it is
   cancelled (the only state a transaction changes).

And one thing is added: DynamoDB requests are answered one at a time. moto's server
runs each request on its own thread and takes no lock, so a conditional write reads the
item, evaluates its condition, then stores the new item, and another thread can store
in between: two `PutItem`s conditioned on the same version both succeeded (a lost
update, which DynamoDB never allows). The deprovision guard's window, counted with such
writes, then let a sixth deactivation through with `max: 5` (tests/guard.rs, rarely).
"""

import copy
import sys
import threading

from moto.core import common_models
from moto.dynamodb import models as dynamodb


def _untracked_new(cls, *args, **kwargs):
    return super(common_models.BaseModel, cls).__new__(cls)


common_models.BaseModel.__new__ = _untracked_new


class _TablesAreNotCopied:
    """moto's DynamoDB module's `copy`: a table's deep copy is the table itself (the
    transaction below saves what it changes); everything else is copied as before."""

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, dynamodb.Table):
            return value
        return copy.deepcopy(value, memo)


dynamodb.copy = _TablesAreNotCopied

_transact_write_items = dynamodb.DynamoDBBackend.transact_write_items


def _item_key(table, entry):
    """(hash, range) of the item a transaction entry names, or None if it names none."""
    try:
        _, op = next(iter(entry.items()))
        if "Key" in op:
            key = op["Key"]
        else:
            attrs = op["Item"]
            key = {a: attrs[a] for a in (table.hash_key_attr, table.range_key_attr) if a}
        return key
    except (KeyError, StopIteration, AttributeError, TypeError):
        return None


def _transact_write_items_saving_items(self, transact_items):
    saved = []
    for entry in transact_items if isinstance(transact_items, list) else []:
        try:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
        except (StopIteration, AttributeError):
            continue
        if table is None:
            continue
        key = _item_key(table, entry)
        if key is None:
            continue
        try:
            hash_value, range_value = self.get_keys_value(table, key)
        except Exception:  # moto reports a malformed key itself
            continue
        current = table.get_item(hash_value, range_value)
        saved.append((table, hash_value, range_value, copy.deepcopy(current)))
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        # Put back, last first, what the items were before (the first save of an item
        # named twice is its state before the transaction).
        for table, hash_value, range_value, before in reversed(saved):
            if table.range_key_attr is not None and range_value is not None:
                partition = table.items[hash_value]
                if before is None:
                    partition.pop(range_value, None)
                    if not partition:
                        table.items.pop(hash_value, None)
                else:
                    partition[range_value] = before
            elif before is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = before
        raise


dynamodb.DynamoDBBackend.transact_write_items = _transact_write_items_saving_items

from moto.dynamodb.responses import DynamoHandler  # noqa: E402

_dynamodb_call_action = DynamoHandler.call_action
_DYNAMODB_LOCK = threading.Lock()


def _call_action_alone(self):
    """One DynamoDB request at a time: each condition is checked and its write applied
    atomically, as DynamoDB does."""
    with _DYNAMODB_LOCK:
        return _dynamodb_call_action(self)


DynamoHandler.call_action = _call_action_alone

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
