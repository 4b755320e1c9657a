"""datomic-aws: provision and update the AWS side of a Datomic Pro transactor."""

__version__ = "0.1.0"
