import { NodeOperationError, type INode } from 'n8n-workflow';

import { MessageInputError } from '../../model/validate';
import { MailTransportError } from '../../transports/contracts';
import { redactSecrets } from './redact';

export interface ItemErrorJson {
	message: string;
	code: string;
	hint: string;
	[key: string]: string;
}

/** One description of a failure for both paths: thrown error and continueOnFail output. */
export function describeItemError(error: unknown, secrets: Array<string | undefined>): ItemErrorJson {
	let message: string;
	let code: string;
	let hint: string;
	if (error instanceof MessageInputError) {
		message = error.message;
		code = 'INVALID_INPUT';
		hint = error.hint ?? `Correct the field "${error.field}"`;
	} else if (error instanceof MailTransportError) {
		message = error.message;
		code = error.code;
		hint = error.hint;
	} else if (error instanceof NodeOperationError) {
		message = error.message;
		code = 'NODE_ERROR';
		hint = typeof error.description === 'string' ? error.description : '';
	} else {
		message = error instanceof Error ? error.message : String(error);
		code = 'UNEXPECTED';
		hint = 'Unexpected failure; see the message';
	}
	return {
		message: redactSecrets(message, secrets),
		code,
		hint: redactSecrets(hint, secrets),
	};
}

export function toNodeOperationError(
	node: INode,
	error: unknown,
	itemIndex: number,
	secrets: Array<string | undefined>,
): NodeOperationError {
	const { message, hint } = describeItemError(error, secrets);
	return new NodeOperationError(node, `Item ${itemIndex}: ${message}`, {
		itemIndex,
		description: hint,
	});
}
