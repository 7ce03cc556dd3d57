from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutionValue(_message.Message):
    __slots__ = ("value", "is_secret")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    IS_SECRET_FIELD_NUMBER: _ClassVar[int]
    value: str
    is_secret: bool
    def __init__(self, value: _Optional[str] = ..., is_secret: _Optional[bool] = ...) -> None: ...

class ExecutionContextSpec(_message.Message):
    __slots__ = ("execution_id", "data")
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ExecutionValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ExecutionValue, _Mapping]] = ...) -> None: ...
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    data: _containers.MessageMap[str, ExecutionValue]
    def __init__(self, execution_id: _Optional[str] = ..., data: _Optional[_Mapping[str, ExecutionValue]] = ...) -> None: ...

class CreateExecutionContextRequest(_message.Message):
    __slots__ = ("spec", "ttl_seconds", "replace", "agent", "instance", "environment_refs")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_REFS_FIELD_NUMBER: _ClassVar[int]
    spec: ExecutionContextSpec
    ttl_seconds: int
    replace: bool
    agent: str
    instance: str
    environment_refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, spec: _Optional[_Union[ExecutionContextSpec, _Mapping]] = ..., ttl_seconds: _Optional[int] = ..., replace: _Optional[bool] = ..., agent: _Optional[str] = ..., instance: _Optional[str] = ..., environment_refs: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateExecutionContextResponse(_message.Message):
    __slots__ = ("execution_token", "created_at", "expires_at", "variables", "server_public_key")
    EXECUTION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    SERVER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    execution_token: str
    created_at: int
    expires_at: int
    variables: _containers.RepeatedCompositeFieldContainer[VariableInfo]
    server_public_key: bytes
    def __init__(self, execution_token: _Optional[str] = ..., created_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., variables: _Optional[_Iterable[_Union[VariableInfo, _Mapping]]] = ..., server_public_key: _Optional[bytes] = ...) -> None: ...

class VariableInfo(_message.Message):
    __slots__ = ("name", "is_secret", "layer")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_SECRET_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    name: str
    is_secret: bool
    layer: str
    def __init__(self, name: _Optional[str] = ..., is_secret: _Optional[bool] = ..., layer: _Optional[str] = ...) -> None: ...

class GetExecutionContextRequest(_message.Message):
    __slots__ = ("execution_id", "recipient_public_key", "names", "token_public_key", "time", "signature", "server_public_key")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SERVER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    recipient_public_key: bytes
    names: _containers.RepeatedScalarFieldContainer[str]
    token_public_key: bytes
    time: int
    signature: bytes
    server_public_key: bytes
    def __init__(self, execution_id: _Optional[str] = ..., recipient_public_key: _Optional[bytes] = ..., names: _Optional[_Iterable[str]] = ..., token_public_key: _Optional[bytes] = ..., time: _Optional[int] = ..., signature: _Optional[bytes] = ..., server_public_key: _Optional[bytes] = ...) -> None: ...

class GetExecutionContextResponse(_message.Message):
    __slots__ = ("execution_id", "created_at", "expires_at", "encapsulated_key", "variables", "sealed_context")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATED_KEY_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    SEALED_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    created_at: int
    expires_at: int
    encapsulated_key: bytes
    variables: _containers.RepeatedCompositeFieldContainer[VariableInfo]
    sealed_context: bytes
    def __init__(self, execution_id: _Optional[str] = ..., created_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., encapsulated_key: _Optional[bytes] = ..., variables: _Optional[_Iterable[_Union[VariableInfo, _Mapping]]] = ..., sealed_context: _Optional[bytes] = ...) -> None: ...

class DeleteExecutionContextRequest(_message.Message):
    __slots__ = ("execution_id",)
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    def __init__(self, execution_id: _Optional[str] = ...) -> None: ...

class DeleteExecutionContextResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class SweepExpiredContextsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SweepExpiredContextsResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...
